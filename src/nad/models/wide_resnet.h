#pragma once
#include "nad/models/batch_norm.h"
#include "nad/models/classifier.h"

namespace nad::models {

struct WideResNetOptions {
  TORCH_ARG(int64_t, depth) = 16;
  TORCH_ARG(int64_t, widen_factor) = 1;
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
};

// Pre-activation wide residual block as in the NAD reference (names bn1, conv1, bn2, conv2,
// convShortcut).
class WideBasicBlockImpl : public torch::nn::Module {
 public:
  WideBasicBlockImpl(int64_t in_planes, int64_t out_planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool equal_in_out_;
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
};
TORCH_MODULE(WideBasicBlock);

// The NAD reference's NetworkBlock: a group of blocks held in a Sequential named `layer`.
class WideGroupImpl : public torch::nn::Module {
 public:
  WideGroupImpl(int64_t blocks, int64_t in_planes, int64_t out_planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x) { return layer_->forward(x); }

 private:
  torch::nn::Sequential layer_;
};
TORCH_MODULE(WideGroup);

class WideResNetImpl : public ClassifierImpl {
 public:
  explicit WideResNetImpl(const WideResNetOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override { return {"block1", "block2", "block3"}; }
  std::vector<double> default_betas() const { return {500, 1000, 1000}; }
  // Groups are the outputs of block1..block3.
  std::vector<std::string> group_consumers(size_t group) const {
    if (group >= 2) return {"fc.weight"};
    const std::string next = "block" + std::to_string(group + 2) + ".layer.0.";
    return {next + "conv1.weight", next + "convShortcut.weight"};
  }

 private:
  WideResNetOptions options_;
  torch::nn::Conv2d conv1_{nullptr};
  WideGroup block1_{nullptr}, block2_{nullptr}, block3_{nullptr};
  BatchNorm2d bn1_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(WideResNet);

}  // namespace nad::models
