#pragma once
#include <nlohmann/json.hpp>

#include "nad/defenses/anp.h"
#include "nad/pipeline/config.h"

namespace nad::pipeline {

// `nad anp`: Adversarial Neuron Pruning (defenses/anp.h): masks learnt on the clean subset, then
// the neurons whose mask fell to the threshold pruned in the original model. No finetuning.
struct AnpConfig {
  DefenseConfig defense;  // the model, the clean subset, --batch-size, augmentation, --verify
  defenses::AnpOptions anp;
  std::string prune_by = "threshold";
};

nlohmann::json run_anp(const AnpConfig& config);

}  // namespace nad::pipeline
