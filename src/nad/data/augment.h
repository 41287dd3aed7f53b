#pragma once
#include <torch/torch.h>

namespace nad::data {

// What fills a Cutout hole. Zero is the original Cutout. Noise (uniform random pixels) exists
// for defenses: a backdoor trigger on an empty background (a corner patch on Fashion-MNIST)
// lives in units that clean images never excite, so finetuning on clean data cannot reach it;
// small noise patches at random places excite such units on clean images with their true
// labels, and finetuning then unlearns the response, with no knowledge of the trigger.
enum class CutoutFill { kZero, kNoise };

CutoutFill parse_cutout_fill(const std::string& name);
std::string cutout_fill_name(CutoutFill fill);

struct AugmentOptions {
  int64_t crop_padding = 4;  // random crop to the original size after zero padding; 0 = off
  bool horizontal_flip = true;
  int64_t cutout_holes = 0;  // Cutout (DeVries & Taylor 2017); 0 = off
  int64_t cutout_length = 3;
  CutoutFill cutout_fill = CutoutFill::kZero;
};

// Applies random crop, flip and Cutout to a whole batch of uint8 N x H x W x C images at once,
// on the images' device. Randomness comes from `generator` (CPU), so runs are reproducible.
torch::Tensor augment_batch(const torch::Tensor& images, const AugmentOptions& options,
                            at::Generator& generator);

// uint8 N x H x W x C -> float N x C x H x W in [0, 1].
torch::Tensor to_input(const torch::Tensor& images);

}  // namespace nad::data
