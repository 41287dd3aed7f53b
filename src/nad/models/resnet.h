#pragma once
#include "nad/models/batch_norm.h"
#include "nad/models/classifier.h"

namespace nad::models {

struct ResNetOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(bool, preactivation) = false;
};

// PreAct-ResNet block as in BackdoorBench (bn1, conv1, bn2, conv2, shortcut.0).
class PreActBlockImpl : public torch::nn::Module {
 public:
  PreActBlockImpl(int64_t in_planes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Sequential shortcut_{nullptr};
};
TORCH_MODULE(PreActBlock);

// Post-activation CIFAR ResNet block (conv1, bn1, conv2, bn2, shortcut.{0,1}).
class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential shortcut_{nullptr};
};
TORCH_MODULE(BasicBlock);

// ResNet-18 for small images, in BackdoorBench's pre-activation form or the widely copied
// post-activation form. Groups for attention: layer2, layer3, layer4.
class ResNet18Impl : public ClassifierImpl {
 public:
  explicit ResNet18Impl(const ResNetOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override { return {"layer2", "layer3", "layer4"}; }
  std::vector<double> default_betas() const { return {500, 1000, 1000}; }
  // Groups are the outputs of layer2..layer4.
  std::vector<std::string> group_consumers(size_t group) const {
    if (group >= 2) return {"linear.weight"};
    const std::string next = "layer" + std::to_string(group + 3) + ".0.";
    return {next + "conv1.weight", next + "shortcut.0.weight"};
  }

 private:
  ResNetOptions options_;
  torch::nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};  // post-activation form only
  torch::nn::Sequential layers_[4];
  torch::nn::Linear linear_{nullptr};
};
TORCH_MODULE(ResNet18);

}  // namespace nad::models
