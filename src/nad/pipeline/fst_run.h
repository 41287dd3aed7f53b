#pragma once
#include <nlohmann/json.hpp>

#include "nad/pipeline/config.h"

namespace nad::pipeline {

// `nad fst`: Feature Shift Tuning (defenses/fst.h) on the clean subset, at one fixed rate.
struct FstConfig {
  DefenseConfig defense;  // the CLI sets the authors' schedule as its defaults
  double alpha = 0.2;     // weight of <W, W_original>
};

nlohmann::json run_fst(const FstConfig& config);

}  // namespace nad::pipeline
