#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "nad/models/classifier.h"

// STRIP (Gao et al., ACSAC 2019): an input-level backdoor detector. Each input is superimposed
// with N clean images; a clean input's predictions then scatter over the classes, while a
// trigger keeps pulling every blend to the target class, so the prediction's entropy stays low.
// Inputs whose entropy is below a threshold calibrated on clean inputs are flagged.
namespace nad::defenses {

// The blends of `images` (uint8 M x H x W x C) with `overlays` (uint8 N x H x W x C, same
// device), as the model's float input (M * N) x C x H x W: row m * N + n is
// x' = 0.5 * image_m + 0.5 * overlay_n on the 0-255 scale, divided by 255, not rounded to uint8.
torch::Tensor superimpose(const torch::Tensor& images, const torch::Tensor& overlays);

// The STRIP entropy of each image, in bits: the Shannon entropy of the softmax averaged over the
// N overlays, H(x) = -sum_k pbar_k log2 pbar_k with pbar = (1/N) sum_n softmax(f(x'_n)) and
// 0 log 0 = 0. (The paper averages the N per-overlay entropies instead; the entropy of the
// mean is never below that and also counts overlays that each predict confidently but
// disagree, which a clean input's blends do.) Batched: about `batch_size` blends per forward
// pass, CPU batches split over single-threaded workers; eval mode, under the run's precision
// (softmax and entropy in fp32 / fp64). Returns M doubles on the CPU.
torch::Tensor strip_entropy(const models::Classifier& model, const torch::Tensor& images,
                            const torch::Tensor& overlays, int64_t batch_size);

// The detection threshold at false-rejection rate `frr` in [0, 1): the k-th smallest clean
// entropy (0-based) with k = floor(frr * n). With the rule "flagged when entropy < threshold"
// it is the largest threshold that flags at most frr of the clean inputs (exactly k of them
// when no entropies tie). UserError when `clean_entropies` is empty or frr is out of range.
double strip_threshold(const torch::Tensor& clean_entropies, double frr);

// Flagged (true) where entropy < threshold.
torch::Tensor strip_flags(const torch::Tensor& entropies, double threshold);

// Percent of `entropies` flagged (below the threshold): the FRR on clean inputs.
double percent_flagged(const torch::Tensor& entropies, double threshold);
// Percent accepted (at or above the threshold): the FAR on triggered inputs.
double percent_accepted(const torch::Tensor& entropies, double threshold);

}  // namespace nad::defenses
