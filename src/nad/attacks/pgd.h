#pragma once
#include <torch/torch.h>

#include "nad/models/classifier.h"

namespace nad::attacks {

struct PgdOptions {
  double eps = 16.0 / 255;  // L-inf radius on the [0, 1] scale
  int64_t steps = 10;
  double step_size = 0;  // 0: 2.5 * eps / steps (Madry et al.)
  int64_t batch_size = 256;
};

// Untargeted PGD (no random start): pushes uint8 N x H x W x C images away from their
// `labels` under `model` within an L-inf ball, and returns them rounded back to uint8 (so the
// perturbation stays within eps + 0.5/255). The model is put in eval mode and not changed.
torch::Tensor pgd_perturb(const models::Classifier& model, const torch::Tensor& images,
                          const torch::Tensor& labels, const PgdOptions& options,
                          torch::Device device);

}  // namespace nad::attacks
