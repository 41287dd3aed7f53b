#pragma once
#include <torch/torch.h>

#include "nad/models/batch_norm.h"

namespace nad::models {

// Inference path of the models: in evaluation mode without gradients (evaluation, the NAD
// teacher's forward pass), a BatchNorm that directly follows a convolution is folded into that
// convolution's weights and bias, and ReLUs and residual additions work in place. The same
// function as the training-mode graph up to rounding; it saves passes over the activations,
// which on the CPU cost as much as a good part of the convolutions.
// On by default; off only to compare (nad_bench --fused-eval).
void set_inference_path_enabled(bool enabled);

// Whether `module` runs its inference path now: enabled, evaluation mode, no gradients.
bool takes_inference_path(const torch::nn::Module& module);

// bn(conv(input)) as one convolution: conv's weight scaled per output channel by bn's
// evaluation-mode scale, and bn's shift (plus the scaled conv bias) as the bias. `bn` must be
// in evaluation mode with running statistics; `conv` zero-padded with `padding`.
torch::Tensor conv_then_batch_norm(const torch::nn::Conv2dImpl& conv, const BatchNorm2dImpl& bn,
                                   const torch::Tensor& input, int64_t padding);

}  // namespace nad::models
