#pragma once
#include "nad/attacks/attack.h"

namespace nad::attacks {

// WaNet (Nguyen & Tran 2021): the image is resampled through a smooth, fixed warping field.
// The field follows the reference code: a k x k grid of uniform [-1, 1] offsets from
// --pattern-seed, divided by its mean absolute value, upsampled bicubically to H x W, scaled
// by s / H and added to the identity sampling grid (clamped to [-1, 1]); grid_sample
// (bilinear, align_corners) then warps the float image, which is rounded back to uint8.
// Noise mode: besides the poisoned rows, cross_ratio times as many other training rows are
// warped through the field plus uniform noise of up to 1/H and keep their label.
class WaNet : public Attack {
 public:
  WaNet(AttackOptions options, int64_t num_classes, int64_t height, int64_t width);
  torch::Tensor apply(const torch::Tensor& images) const override;
  PoisonedSet poison(const data::Dataset& train, uint64_t seed) const override;
  // The sampling grid, 1 x H x W x 2 float (x, y in [-1, 1]).
  const torch::Tensor& grid() const { return grid_; }
  // The noise-mode warp: the field plus fresh per-image noise drawn from `generator`.
  torch::Tensor apply_with_noise(const torch::Tensor& images, at::Generator& generator) const;

 private:
  torch::Tensor grid_;
};

}  // namespace nad::attacks
