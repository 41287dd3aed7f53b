#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "nad/pipeline/config.h"

namespace nad::pipeline {

// `nad inspect-data`: poisoned-sample detection (defenses/data_inspection.h) on the training set
// poisoned as `nad train` poisons it with the same attack options and seed, from the deep
// features of a model trained on it.
struct InspectDataConfig {
  CommonConfig common;
  std::string model;
  ModelFileOptions model_options;
  std::string method = "both";        // spectral | clustering | both
  double expected_poison_rate = 0.1;  // Spectral Signatures' epsilon (an upper bound)
  double size_threshold = 0.35;       // Activation Clustering: a smaller share is suspect
  int64_t components = 10;            // Activation Clustering: independent components
  // A training run's poisoned_indices.txt to measure TPR and FPR against; default: the rows this
  // run poisons itself (the same as `nad train`'s with the same options and seed).
  std::string poisoned_indices;
  // --retrain: train the inspected model's architecture again without the suspects (of both
  // methods with "both"), with `train`'s loop options, into OUT/retrain.
  bool retrain = false;
  TrainConfig train;
};

nlohmann::json run_inspect_data(const InspectDataConfig& config);

}  // namespace nad::pipeline
