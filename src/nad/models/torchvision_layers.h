#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "nad/models/batch_norm.h"

// Building blocks shared by nad's copies of torchvision's architectures (vgg.h, mobilenet.h,
// efficientnet.h, densenet.h, torchvision_resnet.h): torchvision's layers under its parameter
// names, its weight initialisation, and the choice of attention groups by input size.
namespace nad::models {

enum class Activation { kNone, kReLU, kReLU6, kHardswish, kSiLU, kHardsigmoid, kSigmoid };

// The activation; in place when `in_place` (the inference path: no autograd graph to keep).
torch::Tensor activate(const torch::Tensor& x, Activation activation, bool in_place);

// torchvision.ops.Conv2dNormActivation: `0` a convolution without bias (padding (k - 1) / 2),
// `1` a BatchNorm, then the activation. In the inference path the BatchNorm is folded into the
// convolution.
class ConvNormActivationImpl : public torch::nn::Module {
 public:
  ConvNormActivationImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                         Activation activation,
                         const torch::nn::BatchNormOptions& norm = torch::nn::BatchNormOptions(0));
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
  BatchNorm2d bn{nullptr};

 private:
  Activation activation_;
  int64_t padding_;
};
TORCH_MODULE(ConvNormActivation);

// torchvision.ops.SqueezeExcitation: global average, `fc1` (1x1 convolution with bias), the
// inner activation, `fc2`, the scale activation, times the input.
class SqueezeExcitationImpl : public torch::nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze, Activation inner, Activation scale);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d fc1_{nullptr}, fc2_{nullptr};
  Activation inner_, scale_;
};
TORCH_MODULE(SqueezeExcitation);

// torchvision.models._utils._make_divisible.
int64_t make_divisible(double value, int64_t divisor);

// Output side of a convolution or pooling window (floor mode); <= 0 when the input is too small.
inline int64_t window_output(int64_t size, int64_t kernel, int64_t stride, int64_t padding) {
  const int64_t span = size + 2 * padding - kernel;
  return span < 0 ? 0 : span / stride + 1;
}

// How torchvision initialises a family's weights. Convolutions: He normal (gain sqrt 2) on
// fan-out or fan-in, zero bias. BatchNorm: weight 1, bias 0. Linear layers: PyTorch's default,
// N(0, 0.01), or U(-1/sqrt(out), 1/sqrt(out)) (EfficientNet), with zero bias unless default.
enum class ConvInit { kFanOut, kFanIn };
enum class LinearInit { kDefault, kDefaultZeroBias, kNormal001, kUniformOut };
void init_torchvision_weights(torch::nn::Module& model, ConvInit conv, LinearInit linear);

// A stage whose output may be an attention group: its module name and output size.
struct StageOutput {
  std::string name;
  int64_t height = 0, width = 0;
};

// The (at most three) deepest stages whose maps are larger than 1x1, in order; UserError naming
// `arch` when a stage's map vanishes (the input is smaller than the architecture takes) or when
// every map is 1x1. `requested` (--groups) names the stages instead: each must exist and have a
// map larger than 1x1 (a 1x1 map's normalised attention is constant), else a UserError lists
// the candidates.
std::vector<size_t> choose_attention_stages(const std::vector<StageOutput>& stages,
                                            const std::string& arch, int64_t height, int64_t width,
                                            const std::vector<std::string>& requested = {});

// The paper's per-group weights {500, 1000, 1000}: 1000 for the two deepest groups, 500 for
// any shallower ones.
std::vector<double> torchvision_default_betas(size_t groups);

// Appends `output` to `features` when `stage` is one of the attention groups (`groups`, sorted).
inline void collect_group(const std::vector<size_t>& groups, size_t stage,
                          const torch::Tensor& output, std::vector<torch::Tensor>& features) {
  if (std::binary_search(groups.begin(), groups.end(), stage)) features.push_back(output);
}

}  // namespace nad::models
