#pragma once
#include <torch/torch.h>

#include <vector>

#include "nad/models/classifier.h"

namespace nad::models {

// One convolution call as the model made it, for FLOP counts and for replaying the same shape
// in a microbenchmark.
struct ConvolutionCall {
  std::vector<int64_t> input;   // N, C, H, W
  std::vector<int64_t> weight;  // Cout, Cin / groups, kH, kW
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
  double flops = 0;  // 2 x multiply-adds

  bool same_shape(const ConvolutionCall& other) const;
};

// The arithmetic of one forward pass: every convolution and linear layer, counted as two FLOPs
// per multiply-add (the convention of the reference numbers). Element-wise work (BatchNorm,
// ReLU, pooling) is not counted.
struct ForwardCost {
  double convolution_flops = 0;
  double linear_flops = 0;
  std::vector<ConvolutionCall> convolutions;  // in call order
  double total() const { return convolution_flops + linear_flops; }
};

// Runs `model` once on `inputs` (in eval mode, without gradients) and counts what the
// convolution and linear operators were asked to do, from their argument shapes.
ForwardCost measure_forward_cost(const Classifier& model, const torch::Tensor& inputs);

}  // namespace nad::models
