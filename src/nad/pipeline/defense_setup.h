#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "nad/defenses/clean_subset.h"
#include "nad/defenses/finetune.h"
#include "nad/io/checkpoint.h"
#include "nad/pipeline/config.h"
#include "nad/pipeline/context.h"

// What every defense run (finetune, erase, prune, mcr) sets up the same way.
namespace nad::pipeline {

struct DefenseSetup {
  RunContext context;
  io::LoadedModel model;
  defenses::CleanData clean;
  defenses::FinetuneOptions finetune;  // epochs, lr and schedule of the main run
  train::Metrics before;
  nlohmann::json clean_json;
};

// Opens the run, loads --model, draws (or reads) the clean subset, holding out
// --validation-fraction of it when the learning rate is searched or `needs_holdout`, fills
// the finetuning options and measures the model before.
DefenseSetup prepare_defense(const DefenseConfig& config, bool needs_holdout = false);

train::EpochRecord before_record(const train::Metrics& before);
nlohmann::json defense_config_json(const DefenseConfig& config, const DefenseSetup& s);
// The epoch kept by --patience, or null.
nlohmann::json best_epoch_json(const defenses::FinetuneResult& run);
std::string lr_text(const defenses::FinetuneResult& run);

}  // namespace nad::pipeline
