#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "nad/pipeline/config.h"

namespace nad::pipeline {

// `nad clp`: Channel Lipschitzness-based Pruning (defenses/clp.h). Data-free: the dataset is
// read only to measure the model before and after.
struct ClpConfig {
  CommonConfig common;
  std::string model;
  ModelFileOptions model_options;
  double u = 3.0;
};

nlohmann::json run_clp(const ClpConfig& config);

}  // namespace nad::pipeline
