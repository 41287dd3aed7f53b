#pragma once
#include <string>
#include <vector>

#include "nad/models/batch_norm.h"
#include "nad/models/classifier.h"

namespace nad::models {

// torchvision's BasicBlock (conv1, bn1, conv2, bn2, downsample.{0,1}).
class TorchvisionBasicBlockImpl : public torch::nn::Module {
 public:
  TorchvisionBasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(TorchvisionBasicBlock);

// torchvision's Bottleneck, ResNet v1.5: the stride in conv2 (conv1..3, bn1..3, downsample).
class TorchvisionBottleneckImpl : public torch::nn::Module {
 public:
  TorchvisionBottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(TorchvisionBottleneck);

struct TorchvisionResNetOptions {
  TORCH_ARG(std::string, arch) = "tv-resnet18";  // tv-resnet18, tv-resnet34 or tv-resnet50
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, height) = 32;
  TORCH_ARG(int64_t, width) = 32;
  // Attention groups by stage name (--groups); empty: the default choice.
  TORCH_ARG(std::vector<std::string>, groups) = {};
};

// torchvision.models.resnet18/34/50: a 7x7 stride-2 stem (conv1, bn1), a 3x3 stride-2 max-pool,
// layer1..layer4, global average pooling and fc. Attention groups: the (at most three) deepest
// of layer1..layer4 whose maps are larger than 1x1 at the model's input size (layer1..layer3
// at 32x32, layer2..layer4 at 64x64 and above).
class TorchvisionResNetImpl : public ClassifierImpl {
 public:
  explicit TorchvisionResNetImpl(const TorchvisionResNetOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override;
  std::vector<double> default_betas() const;
  // The next layer's first block (conv1 and downsample.0), or fc after layer4.
  std::vector<std::string> group_consumers(size_t group) const;

 private:
  TorchvisionResNetOptions options_;
  bool bottleneck_ = false;
  std::vector<int64_t> blocks_;
  std::vector<size_t> groups_;  // indices of the layers (0..3) that are attention groups
  torch::nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
  torch::nn::Sequential layers_[4];
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(TorchvisionResNet);

}  // namespace nad::models
