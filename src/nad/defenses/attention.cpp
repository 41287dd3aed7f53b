#include "nad/defenses/attention.h"

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::defenses {

AttentionKind parse_attention_kind(const std::string& text) {
  if (text == "sum-p") return AttentionKind::kSumPower;
  if (text == "sum") return AttentionKind::kSum;
  if (text == "mean-p") return AttentionKind::kMeanPower;
  throw UserError(flag::attention + " must be sum-p, sum or mean-p, not '" + text + "'");
}

std::string attention_kind_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kSumPower:
      return "sum-p";
    case AttentionKind::kSum:
      return "sum";
    case AttentionKind::kMeanPower:
      return "mean-p";
  }
  return "?";
}

torch::Tensor attention_map(const torch::Tensor& features, double power, AttentionKind kind) {
  TORCH_CHECK(features.dim() == 4, "attention_map expects N x C x H x W features");
  // In fp32 whatever the forward pass ran in: the normalisation and squares lose too much in bf16.
  torch::Tensor magnitude = features.to(torch::kFloat).abs();
  torch::Tensor map;
  switch (kind) {
    case AttentionKind::kSumPower:
      map = magnitude.pow(power).sum(1, true);
      break;
    case AttentionKind::kSum:
      map = magnitude.sum(1, true);
      break;
    case AttentionKind::kMeanPower:
      map = magnitude.pow(power).mean(1, true);
      break;
  }
  torch::Tensor norm = map.flatten(1).norm(2, {1}).view({-1, 1, 1, 1});
  return map / (norm + 1e-6);
}

torch::Tensor attention_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                             double power, AttentionKind kind) {
  return torch::mse_loss(attention_map(student, power, kind), attention_map(teacher, power, kind));
}

}  // namespace nad::defenses
