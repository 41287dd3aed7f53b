#pragma once
#include <torch/torch.h>

#include <vector>

namespace nad::train {

// SGD's momentum buffers, one per parameter in order (undefined before the first step), and
// back. LibTorch keys its optimizer state by parameter; this hides how (it changed in 2.0).
std::vector<torch::Tensor> sgd_momentum(torch::optim::SGD& optimizer,
                                        const std::vector<torch::Tensor>& parameters);
void set_sgd_momentum(torch::optim::SGD& optimizer, const std::vector<torch::Tensor>& parameters,
                      const std::vector<torch::Tensor>& buffers);

// One step of `optimizer`, computed as torch::optim::SGD computes it (same operations, same
// order: equal results) but with multi-tensor (foreach) operations: on a GPU a handful of
// kernels for all parameters instead of four or five per parameter, which made the step
// launch-bound. A step that must create momentum buffers (the first) is LibTorch's own.
// Nothing in it waits for the device, so a CUDA graph can capture it.
void sgd_step(torch::optim::SGD& optimizer);

// Drops every parameter's gradient (backward then writes a fresh one instead of adding to zeros:
// the same values, with no zeroing kernels).
void clear_gradients(const std::vector<torch::Tensor>& parameters);

}  // namespace nad::train
