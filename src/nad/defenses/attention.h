#pragma once
#include <torch/torch.h>

#include <string>

namespace nad::defenses {

// How channels are collapsed into one attention map (the paper's Section 3 variants).
enum class AttentionKind {
  kSumPower,   // sum_c |F_c|^p (NAD's default)
  kSum,        // sum_c |F_c|
  kMeanPower,  // (1/C) sum_c |F_c|^p
};
AttentionKind parse_attention_kind(const std::string& text);  // sum-p | sum | mean-p
std::string attention_kind_name(AttentionKind kind);

// Attention map of N x C x H x W features: N x 1 x H x W, each sample's map divided by its L2
// norm over H x W plus 1e-6.
torch::Tensor attention_map(const torch::Tensor& features, double power = 2.0,
                            AttentionKind kind = AttentionKind::kSumPower);

// AT loss: mean squared error between the two attention maps.
torch::Tensor attention_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                             double power = 2.0, AttentionKind kind = AttentionKind::kSumPower);

}  // namespace nad::defenses
