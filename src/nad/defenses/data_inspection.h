#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

// Poisoned-sample detection in a training set, from a model trained on it: the samples of a
// class whose deep features stand apart from the class's clean majority.
//
// - Spectral Signatures (Tran et al., NeurIPS 2018): per class, the squared projection of each
//   centred feature vector on the top right singular vector of the class's centred features;
//   the 1.5 x expected-poison-rate x class-size highest scores are suspect.
// - Activation Clustering (Chen et al., 2018; as IBM ART's ActivationDefence): per class, the
//   features reduced to 10 independent components (FastICA: whitening, logcosh, parallel
//   updates), then 2-means; a cluster holding less than 35% of the class is suspect.
namespace nad::defenses {

// One score per row of `features` (N x D): <f_i - mean, v>^2 with v the top right singular
// vector of the centred matrix. float64.
torch::Tensor spectral_scores(const torch::Tensor& features);

struct ClassScores {
  int64_t label = 0;
  int64_t size = 0;
  int64_t suspects = 0;
  double statistic =
      0;  // spectral: the top singular value; clustering: the smaller cluster's share
};

struct InspectionResult {
  std::string method;
  std::vector<int64_t> suspects;  // row indices, sorted
  // Per row, float64: spectral, its score; clustering, 1 in its class's smaller cluster (flagged
  // or not), else 0.
  torch::Tensor scores;
  std::vector<ClassScores> classes;
};

// Spectral Signatures over every class of `labels` (int64, N).
InspectionResult spectral_signatures(const torch::Tensor& features, const torch::Tensor& labels,
                                     double expected_poison_rate, double multiplier = 1.5);

// FastICA of `x` (N x D) to `components` sources (N x components), sklearn's defaults (whitening by
// PCA, logcosh, parallel updates, 200 iterations, tolerance 1e-4), from `seed`.
torch::Tensor fast_ica(const torch::Tensor& x, int64_t components, uint64_t seed);

// 2-means (Lloyd, k-means++ starts, the best of `restarts` by inertia) of the rows of `x`:
// the cluster of each row (0 or 1, int64).
torch::Tensor two_means(const torch::Tensor& x, uint64_t seed, int restarts = 10);

// Activation Clustering over every class.
InspectionResult activation_clustering(const torch::Tensor& features, const torch::Tensor& labels,
                                       uint64_t seed, int64_t components = 10,
                                       double size_threshold = 0.35);

// True and false positive rates of `suspects` against the known poisoned rows, in percent.
struct DetectionRates {
  int64_t true_positives = 0, false_positives = 0, poisoned = 0, clean = 0;
  double tpr = 0, fpr = 0;
};
DetectionRates detection_rates(const std::vector<int64_t>& suspects,
                               const torch::Tensor& poisoned_rows, int64_t total_rows);

}  // namespace nad::defenses
