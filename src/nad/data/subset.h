#pragma once
#include <torch/torch.h>

namespace nad::data {

// A seeded random sample of round(ratio * N) rows, stratified by class: each class gets its
// proportional share (largest remainders break ties). Returns sorted int64 indices.
torch::Tensor stratified_subset(const torch::Tensor& labels, double ratio, uint64_t seed);

// Splits `indices` into a training part and a held-out part of round(fraction * n) rows,
// stratified by `labels[indices]` and seeded.
std::pair<torch::Tensor, torch::Tensor> split_holdout(const torch::Tensor& indices,
                                                      const torch::Tensor& labels, double fraction,
                                                      uint64_t seed);

}  // namespace nad::data
