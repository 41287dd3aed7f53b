#pragma once
#include <string>
#include <vector>

#include "nad/models/classifier.h"

// Channel Lipschitzness-based Pruning, CLP (Zheng et al., ECCV 2022): a data-free defense. For
// each BatchNorm that follows a convolution, every output channel's upper bound on its
// Lipschitz constant (UCLC) is the largest singular value of that channel's convolution kernel
// (in_channels x k*k) times |gamma / sigma| of the BatchNorm; channels whose bound exceeds
// mean + u * std of their layer's bounds are pruned by zeroing the BatchNorm's weight and bias.
//
// As the authors' code does (and where it differs from the paper's description):
// - a BatchNorm is paired with the convolution registered last before it (module order), and
//   skipped here when that convolution's output channels do not match (their code would fail);
// - sigma is sqrt(running_var), without the BatchNorm's eps;
// - std is the unbiased (n - 1) standard deviation, torch.std's default.
namespace nad::defenses {

struct ClpOptions {
  double u = 3.0;  // threshold in standard deviations above the layer's mean bound
};

struct ClpLayer {
  std::string batch_norm;       // parameter path of the pruned BatchNorm ("block1.layer.0.bn2")
  std::string conv;             // the convolution it was paired with
  torch::Tensor bounds;         // float64, one per channel
  double threshold = 0;         // mean + u * std of bounds
  std::vector<int64_t> pruned;  // channels whose bound exceeds the threshold
};

struct ClpResult {
  models::Classifier model;  // the pruned copy
  std::vector<ClpLayer> layers;
  std::vector<std::string> skipped;  // BatchNorms with no matching convolution before them
  int64_t pruned = 0;
  int64_t channels = 0;  // over all paired BatchNorms
};

// Per output channel: the largest singular value of conv_weight[c] viewed as
// (in_channels / groups) x (k * k), times |bn_weight[c]| / sqrt(running_var[c]). float64.
torch::Tensor channel_lipschitz_bounds(const torch::Tensor& conv_weight,
                                       const torch::Tensor& bn_weight,
                                       const torch::Tensor& running_var);

// Prunes a copy of `model` (never the original).
ClpResult clp_prune(const models::Classifier& model, const models::ModelSpec& spec,
                    const ClpOptions& options);

}  // namespace nad::defenses
