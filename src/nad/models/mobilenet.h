#pragma once
#include <string>
#include <vector>

#include "nad/models/batch_norm.h"
#include "nad/models/classifier.h"
#include "nad/models/torchvision_layers.h"

namespace nad::models {

// torchvision's MobileNetV2 InvertedResidual: `conv.{0,1}` Conv2dNormActivations (expansion
// when the ratio is not 1, then depthwise), `conv.K` the linear projection and `conv.K+1` its
// BatchNorm; the input is added when the stride is 1 and the widths agree.
class MobileNetV2BlockImpl : public torch::nn::Module {
 public:
  MobileNetV2BlockImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool residual_;
  ConvNormActivation expand_{nullptr}, depthwise_{nullptr};
  torch::nn::Conv2d project_{nullptr};
  BatchNorm2d project_bn_{nullptr};
};
TORCH_MODULE(MobileNetV2Block);

// torchvision's MobileNetV3 InvertedResidual: `block.M` = expansion (when wider), depthwise,
// SqueezeExcitation (fc1/fc2, Hardsigmoid) where configured, projection.
class MobileNetV3BlockImpl : public torch::nn::Module {
 public:
  MobileNetV3BlockImpl(int64_t in, int64_t kernel, int64_t expanded, int64_t out, bool se,
                       Activation activation, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool residual_;
  ConvNormActivation expand_{nullptr}, depthwise_{nullptr}, project_{nullptr};
  SqueezeExcitation se_{nullptr};
};
TORCH_MODULE(MobileNetV3Block);

struct MobileNetOptions {
  TORCH_ARG(std::string, arch) = "mobilenet_v2";  // or mobilenet_v3_large
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, height) = 32;
  TORCH_ARG(int64_t, width) = 32;
  // Attention groups by stage name (--groups); empty: the default choice.
  TORCH_ARG(std::vector<std::string>, groups) = {};
};

// torchvision.models.mobilenet_v2 and mobilenet_v3_large: `features.N` (stem, inverted
// residuals, last 1x1 convolution), global average pooling, and `classifier.1` (v2: dropout,
// linear) or `classifier.{0,3}` (v3: linear, Hardswish, dropout, linear). Attention groups: the
// ends of the resolution stages (the `features` entries before each stride-2 block, and the
// last), the (at most three) deepest whose maps are larger than 1x1.
class MobileNetImpl : public ClassifierImpl {
 public:
  explicit MobileNetImpl(const MobileNetOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override;
  std::vector<double> default_betas() const;
  // The next block's expansion convolution, or the first classifier layer.
  std::vector<std::string> group_consumers(size_t group) const;

 private:
  bool v3_;
  torch::nn::Sequential features_{nullptr};
  std::vector<size_t> groups_;                       // `features` indices
  std::vector<std::string> first_weights_;           // per `features` entry: its first weight
  torch::nn::Linear hidden_{nullptr}, fc_{nullptr};  // hidden_: v3's classifier.0
};
TORCH_MODULE(MobileNet);

}  // namespace nad::models
