#pragma once
#include "nad/attacks/attack.h"

namespace nad::attacks {

// SIG (Barni et al. 2019), a clean-label attack: x' = clip(round(x + v), 0, 255) with the
// horizontal sinusoid v(i, j) = delta * sin(2 pi j f / W) on every channel. Only target-class
// training images are poisoned and they keep their label; at test time the same signal goes
// on images of the other classes.
class Sig : public Attack {
 public:
  Sig(AttackOptions options, int64_t num_classes, int64_t height, int64_t width);
  torch::Tensor apply(const torch::Tensor& images) const override;
  const torch::Tensor& signal() const { return signal_; }  // W float values, one per column

 private:
  torch::Tensor signal_;
};

}  // namespace nad::attacks
