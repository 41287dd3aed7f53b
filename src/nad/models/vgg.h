#pragma once
#include <string>
#include <vector>

#include "nad/models/batch_norm.h"
#include "nad/models/classifier.h"

namespace nad::models {

struct VggOptions {
  TORCH_ARG(std::string, arch) = "vgg16";  // vgg11, vgg13, vgg16, vgg19, each also with _bn
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, height) = 32;
  TORCH_ARG(int64_t, width) = 32;
  // Attention groups by stage name (--groups); empty: the default choice.
  TORCH_ARG(std::vector<std::string>, groups) = {};
};

// torchvision.models.vgg*: `features.N` (3x3 convolutions with bias, with the _bn variants a
// BatchNorm after each, ReLU, 2x2 max-pools), a 7x7 adaptive average pool and
// `classifier.{0,3,6}` (25088 -> 4096 -> 4096 -> classes, dropout 0.5 in training). Attention
// groups: the outputs of the (at most three) deepest max-pools whose maps are larger than 1x1.
class VggImpl : public ClassifierImpl {
 public:
  explicit VggImpl(const VggOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override;
  std::vector<double> default_betas() const;
  // The convolution after the group's max-pool, or classifier.0 (channels x 7 x 7 positions).
  std::vector<std::string> group_consumers(size_t group) const;

 private:
  struct Layer {
    int64_t index;                    // in `features`
    torch::nn::Conv2d conv{nullptr};  // null for a max-pool
    BatchNorm2d bn{nullptr};          // _bn variants
    bool group = false;               // a max-pool whose output is an attention group
  };
  std::vector<Layer> layers_;
  std::vector<int64_t> group_pools_;  // `features` indices of the group max-pools
  int64_t after_last_ = 0;            // `features` length (the index after the last layer)
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
};
TORCH_MODULE(Vgg);

}  // namespace nad::models
