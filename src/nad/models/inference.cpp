#include "nad/models/inference.h"

#include <atomic>
#include <stdexcept>

namespace nad::models {

namespace {
std::atomic<bool> enabled{true};
}  // namespace

void set_inference_path_enabled(bool value) { enabled = value; }

bool takes_inference_path(const torch::nn::Module& module) {
  return enabled && !module.is_training() && !torch::GradMode::is_enabled();
}

torch::Tensor conv_then_batch_norm(const torch::nn::Conv2dImpl& conv, const BatchNorm2dImpl& bn,
                                   const torch::Tensor& input, int64_t padding) {
  const auto affine = bn.inference_affine();
  if (!affine) throw std::logic_error("conv_then_batch_norm: BatchNorm not in evaluation mode");
  const auto& [scale, shift] = *affine;
  const torch::Tensor weight = conv.weight * scale.view({-1, 1, 1, 1}).to(conv.weight.dtype());
  torch::Tensor bias = shift;
  if (conv.bias.defined()) bias = bias + conv.bias.to(torch::kFloat) * scale;
  return torch::conv2d(input, weight, bias.to(conv.weight.dtype()), conv.options.stride(), padding,
                       conv.options.dilation(), conv.options.groups());
}

}  // namespace nad::models
