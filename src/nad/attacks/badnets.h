#pragma once
#include "nad/attacks/attack.h"

namespace nad::attacks {

// BadNets (Gu et al. 2017): a 3x3 patch in the image corner(s). `grid` is the reference
// checkerboard, `square` an all-white patch, `four-corner` the checkerboard mirrored into all
// four corners.
class BadNets : public Attack {
 public:
  BadNets(AttackOptions options, int64_t num_classes, int64_t height, int64_t width);
  torch::Tensor apply(const torch::Tensor& images) const override;
  // H x W mask (bool) of trigger pixels and H x W uint8 values there.
  const torch::Tensor& mask() const { return mask_; }
  const torch::Tensor& values() const { return values_; }

 private:
  torch::Tensor mask_, values_;
};

}  // namespace nad::attacks
