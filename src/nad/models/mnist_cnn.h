#pragma once
#include "nad/models/classifier.h"

namespace nad::models {

struct MnistCnnOptions {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, height) = 28;
  TORCH_ARG(int64_t, width) = 28;
};

// Two 3x3 convolutions (32 and 64 channels, each followed by ReLU and 2x2 max pooling) and two
// fully-connected layers. The groups for attention are the two convolutions' ReLU outputs.
class MnistCnnImpl : public ClassifierImpl {
 public:
  explicit MnistCnnImpl(const MnistCnnOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override { return {"conv1", "conv2"}; }
  std::vector<double> default_betas() const { return {500, 1000}; }
  std::vector<std::string> group_consumers(size_t group) const {
    return {group == 0 ? "conv2.weight" : "fc1.weight"};
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(MnistCnn);

}  // namespace nad::models
