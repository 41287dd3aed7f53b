#include "nad/models/torchvision_layers.h"

#include <cmath>

#include "nad/models/inference.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::models {
namespace nn = torch::nn;

torch::Tensor activate(const torch::Tensor& x, Activation activation, bool in_place) {
  // The Tensor handle is shared; the in-place forms change the one storage.
  torch::Tensor t = x;
  switch (activation) {
    case Activation::kNone:
      return x;
    case Activation::kReLU:
      return in_place ? t.relu_() : torch::relu(x);
    case Activation::kReLU6:
      // nn.ReLU6 is hardtanh(0, 6); LibTorch 1.13 has no bf16 hardtanh backward on the CPU, clamp
      // the same forward and gradient (but at exactly 0 and 6).
      return in_place ? t.clamp_(0, 6) : torch::clamp(x, 0, 6);
    case Activation::kHardswish:
      return in_place ? torch::hardswish_(t) : torch::hardswish(x);
    case Activation::kSiLU:
      return in_place ? torch::silu_(t) : torch::silu(x);
    case Activation::kHardsigmoid:
      return in_place ? torch::hardsigmoid_(t) : torch::hardsigmoid(x);
    case Activation::kSigmoid:
      return in_place ? t.sigmoid_() : torch::sigmoid(x);
  }
  return x;
}

ConvNormActivationImpl::ConvNormActivationImpl(int64_t in, int64_t out, int64_t kernel,
                                               int64_t stride, int64_t groups,
                                               Activation activation,
                                               const nn::BatchNormOptions& norm)
    : activation_(activation), padding_((kernel - 1) / 2) {
  conv = register_module("0", nn::Conv2d(nn::Conv2dOptions(in, out, kernel)
                                             .stride(stride)
                                             .padding(padding_)
                                             .groups(groups)
                                             .bias(false)));
  nn::BatchNormOptions options = norm;
  options.num_features(out);
  bn = register_module("1", BatchNorm2d(options));
}

torch::Tensor ConvNormActivationImpl::forward(const torch::Tensor& x) {
  if (takes_inference_path(*this)) {
    return activate(conv_then_batch_norm(*conv, *bn, x, padding_), activation_, true);
  }
  return activate(bn->forward(conv->forward(x)), activation_, false);
}

SqueezeExcitationImpl::SqueezeExcitationImpl(int64_t channels, int64_t squeeze, Activation inner,
                                             Activation scale)
    : inner_(inner), scale_(scale) {
  fc1_ = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, squeeze, 1)));
  fc2_ = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze, channels, 1)));
}

torch::Tensor SqueezeExcitationImpl::forward(const torch::Tensor& x) {
  const bool in_place = takes_inference_path(*this);
  torch::Tensor scale = activate(fc1_->forward(x.mean({2, 3}, /*keepdim=*/true)), inner_, in_place);
  scale = activate(fc2_->forward(scale), scale_, in_place);
  return x * scale;
}

int64_t make_divisible(double value, int64_t divisor) {
  int64_t rounded =
      std::max<int64_t>(divisor, static_cast<int64_t>(value + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

void init_torchvision_weights(nn::Module& model, ConvInit conv, LinearInit linear) {
  torch::NoGradGuard no_grad;
  for (auto& module : model.modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      const nn::init::FanModeType mode = conv == ConvInit::kFanOut
                                             ? nn::init::FanModeType(torch::kFanOut)
                                             : nn::init::FanModeType(torch::kFanIn);
      nn::init::kaiming_normal_(c->weight, 0, mode, torch::kReLU);
      if (c->bias.defined()) c->bias.zero_();
    } else if (auto* bn = module->as<BatchNorm2d>()) {
      bn->weight.fill_(1);
      bn->bias.zero_();
    } else if (auto* l = module->as<nn::Linear>()) {
      switch (linear) {
        case LinearInit::kDefault:
          break;  // LibTorch's reset() is PyTorch's default
        case LinearInit::kDefaultZeroBias:
          l->bias.zero_();
          break;
        case LinearInit::kNormal001:
          l->weight.normal_(0, 0.01);
          l->bias.zero_();
          break;
        case LinearInit::kUniformOut: {
          const double range = 1.0 / std::sqrt(static_cast<double>(l->weight.size(0)));
          l->weight.uniform_(-range, range);
          l->bias.zero_();
          break;
        }
      }
    }
  }
}

std::vector<size_t> choose_attention_stages(const std::vector<StageOutput>& stages,
                                            const std::string& arch, int64_t height, int64_t width,
                                            const std::vector<std::string>& requested) {
  const std::string size = std::to_string(height) + "x" + std::to_string(width);
  std::vector<size_t> chosen;
  for (size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].height < 1 || stages[i].width < 1) {
      throw UserError(flag::arch + " " + arch + " cannot take " + size + " inputs: the map of " +
                      stages[i].name + " would be empty");
    }
    if (stages[i].height * stages[i].width > 1) chosen.push_back(i);
  }
  if (chosen.empty()) {
    throw UserError(flag::arch + " " + arch + " on " + size +
                    " inputs has no stage with a map larger than 1x1 for attention");
  }
  if (!requested.empty()) {
    std::string candidates;
    for (size_t i : chosen) {
      candidates += (candidates.empty() ? "" : ", ") + stages[i].name + " (" +
                    std::to_string(stages[i].height) + "x" + std::to_string(stages[i].width) + ")";
    }
    std::vector<size_t> named;
    for (const std::string& name : requested) {
      const auto it = std::find_if(stages.begin(), stages.end(),
                                   [&](const StageOutput& stage) { return stage.name == name; });
      if (it == stages.end() ||
          std::find(chosen.begin(), chosen.end(), static_cast<size_t>(it - stages.begin())) ==
              chosen.end()) {
        throw UserError(flag::groups + ": '" + name + "' is not a stage of " + arch +
                        " with a map larger than 1x1 at " + size +
                        "; the candidates: " + candidates);
      }
      named.push_back(static_cast<size_t>(it - stages.begin()));
    }
    std::sort(named.begin(), named.end());
    named.erase(std::unique(named.begin(), named.end()), named.end());
    return named;
  }
  if (chosen.size() > 3) chosen.erase(chosen.begin(), chosen.end() - 3);
  return chosen;
}

std::vector<double> torchvision_default_betas(size_t groups) {
  // The paper's {500, 1000, 1000}: 1000 for the two deepest groups, 500 for shallower ones.
  std::vector<double> betas(groups, 500);
  for (size_t i = groups >= 2 ? groups - 2 : 0; i < groups; ++i) betas[i] = 1000;
  return betas;
}

}  // namespace nad::models
