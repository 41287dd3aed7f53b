#pragma once
#include "nad/attacks/attack.h"

namespace nad::attacks {

// Blend (Chen et al. 2017): x' = (1 - alpha) x + alpha t, rounded, with a fixed pattern t.
class Blend : public Attack {
 public:
  Blend(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
        int64_t channels);
  torch::Tensor apply(const torch::Tensor& images) const override;
  const torch::Tensor& pattern() const { return pattern_; }  // H x W x C uint8

 private:
  torch::Tensor pattern_;
};

}  // namespace nad::attacks
