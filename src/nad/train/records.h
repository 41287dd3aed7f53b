#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace nad::train {

// Clean accuracy, attack success rate and robust accuracy, all in percent. ASR and RA are
// empty when no attack was given.
struct Metrics {
  double clean_acc = 0;
  std::optional<double> asr;
  std::optional<double> robust_acc;

  nlohmann::json to_json() const;
  std::string summary() const;  // "ACC 85.10% ASR 99.90% RA 0.05%"
};

// One epoch of a training or finetuning loop, as metrics.csv records it.
struct EpochRecord {
  std::string phase;
  int epoch = 0;  // 1-based; 0 is the model before training
  double lr = 0;
  double loss = 0;
  double train_acc = 0;
  Metrics metrics;
  double seconds = 0;
};

}  // namespace nad::train
