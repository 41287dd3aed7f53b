#pragma once
#include <torch/torch.h>

namespace nad::data {

struct AugmentOptions {
  int64_t crop_padding = 4;  // random crop to the original size after zero padding; 0 = off
  bool horizontal_flip = true;
  int64_t cutout_holes = 0;  // Cutout (DeVries & Taylor 2017); 0 = off
  int64_t cutout_length = 3;
};

// Applies random crop, flip and Cutout to a whole batch of uint8 N x H x W x C images at once,
// on the images' device. Randomness comes from `generator` (CPU), so runs are reproducible.
torch::Tensor augment_batch(const torch::Tensor& images, const AugmentOptions& options,
                            at::Generator& generator);

// uint8 N x H x W x C -> float N x C x H x W in [0, 1].
torch::Tensor to_input(const torch::Tensor& images);

}  // namespace nad::data
