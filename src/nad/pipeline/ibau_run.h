#pragma once
#include <nlohmann/json.hpp>

#include "nad/defenses/ibau.h"
#include "nad/pipeline/config.h"

namespace nad::pipeline {

// `nad ibau`: Implicit Backdoor Adversarial Unlearning (defenses/ibau.h) on the clean subset.
struct IbauConfig {
  DefenseConfig defense;  // the model, the clean subset, --batch-size, --lr (Adam), --verify
  defenses::IbauOptions ibau;
};

nlohmann::json run_ibau(const IbauConfig& config);

}  // namespace nad::pipeline
