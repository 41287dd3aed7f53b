#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "nad/models/classifier.h"

// STRIP (Gao et al., ACSAC 2019): an input-level backdoor detector. Each input is superimposed
// with N clean images; a clean input's predictions then scatter over the classes, while a
// trigger keeps pulling every blend to the target class, so the prediction's entropy stays low.
// Inputs whose entropy is below a threshold calibrated on clean inputs are flagged.
namespace nad::defenses {

// How an input and an overlay are combined, on the 0-255 scale, in float (never rounded):
// - kBlend: x' = 0.5 x + 0.5 overlay;
// - kAdd: x' = min(x + overlay, 255), the paper code's cv2.addWeighted(x, 1, overlay, 1, 0)
//   on uint8 images (saturating): a trigger keeps its full strength wherever it is bright, but
//   so do bright clean images (sky, sea), whose blends then stay in one class.
enum class Superimpose { kAdd, kBlend };
// What is taken of the N blends' softmax outputs p_n (entropies in bits, 0 log 0 = 0):
// - kEntropyOfMean: H((1/N) sum_n p_n), which also counts blends that each predict confidently
//   but disagree, as a clean input's do;
// - kMeanOfEntropies: (1/N) sum_n H(p_n), the paper's normalised entropy sum, never above it.
enum class StripEntropy { kMeanOfEntropies, kEntropyOfMean };

// The default is the paper's code, add + mean. Measured on CIFAR-10 WRN-16-1 (docs/detection.md):
// on Blend it reaches FAR 6% at FRR 1% where the half-and-half blend halves the trigger and
// reaches 99.7%; on BadNets the blend did better at FRR 1% (66% against 97%) but not at 5-10%,
// with equal AUROC (0.96).
struct StripMethod {
  Superimpose superimpose = Superimpose::kAdd;
  StripEntropy entropy = StripEntropy::kMeanOfEntropies;

  // "add" | "blend" and "mean" | "of-mean", as the CLI and strip.json spell them.
  std::string superimpose_name() const;
  std::string entropy_name() const;
  // One line defining the entropy as computed, for reports and strip.json.
  std::string definition() const;
};
// Parses the names above; UserError naming `option` otherwise.
Superimpose parse_superimpose(const std::string& name, const std::string& option);
StripEntropy parse_strip_entropy(const std::string& name, const std::string& option);

// The combinations of `images` (uint8 M x H x W x C) with `overlays` (uint8 N x H x W x C, same
// device), as the model's float input (M * N) x C x H x W in [0, 1]: row m * N + n combines
// image m with overlay n.
torch::Tensor superimpose(const torch::Tensor& images, const torch::Tensor& overlays,
                          Superimpose mode = Superimpose::kBlend);

// The STRIP entropy of each image, in bits, as `method` defines it. Batched: about
// `batch_size` blends per forward pass, CPU batches split over single-threaded workers; eval
// mode, under the run's precision (softmax and entropy in fp32 / fp64). Returns M doubles on
// the CPU.
torch::Tensor strip_entropy(const models::Classifier& model, const torch::Tensor& images,
                            const torch::Tensor& overlays, int64_t batch_size,
                            const StripMethod& method = {});

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
