#pragma once
#include <string>
#include <vector>

#include "nad/models/batch_norm.h"
#include "nad/models/classifier.h"
#include "nad/models/torchvision_layers.h"

namespace nad::models {

// torchvision's MBConv: `block.K` = expansion (when the ratio is not 1), depthwise,
// SqueezeExcitation (SiLU, sigmoid), projection; SiLU activations. Where the input is added
// (stride 1, same widths), the branch first goes through StochasticDepth in "row" mode with
// probability `drop`: in training each sample's branch is dropped with that probability and the
// kept ones scaled by 1 / (1 - drop); in evaluation it is the identity.
class MBConvImpl : public torch::nn::Module {
 public:
  MBConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t expand_ratio,
             double drop);
  torch::Tensor forward(const torch::Tensor& x);
  // The first convolution's name, under `block`.
  static std::string first_conv() { return "block.0.0"; }

 private:
  bool residual_;
  double drop_;
  ConvNormActivation expand_{nullptr}, depthwise_{nullptr}, project_{nullptr};
  SqueezeExcitation se_{nullptr};
};
TORCH_MODULE(MBConv);

// One stage of MBConvs, `0`, `1`, ... (torchvision's nn.Sequential; LibTorch cannot put a
// Sequential inside another).
class MBConvStageImpl : public torch::nn::Module {
 public:
  void add(MBConv block);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<MBConv> blocks_;
};
TORCH_MODULE(MBConvStage);

struct EfficientNetOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, height) = 32;
  TORCH_ARG(int64_t, width) = 32;
  // Attention groups by stage name (--groups); empty: the default choice.
  TORCH_ARG(std::vector<std::string>, groups) = {};
};

// torchvision.models.efficientnet_b0: `features.0` stem, `features.1..7` stages of MBConvs
// (`features.N.M.block.K`), `features.8` the last 1x1 convolution, global average pooling,
// `classifier.1` (after dropout 0.2). Stochastic depth 0.2 x block index / 16. Attention
// groups: the ends of the resolution stages (features.1, 2, 3, 5 and 8), the (at most three)
// deepest whose maps are larger than 1x1.
class EfficientNetImpl : public ClassifierImpl {
 public:
  explicit EfficientNetImpl(const EfficientNetOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override;
  std::vector<double> default_betas() const;
  // The next stage's first expansion convolution, or classifier.1.
  std::vector<std::string> group_consumers(size_t group) const;

 private:
  torch::nn::Sequential features_{nullptr};
  std::vector<size_t> groups_;  // `features` indices
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(EfficientNet);

}  // namespace nad::models
