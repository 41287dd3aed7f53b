#pragma once
#include <nlohmann/json.hpp>
#include <ostream>
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

// --verify: Neural Cleanse on the model before and after the defense (out/scan-before,
// out/scan-after), on the defense's own clean subset, and the success of the most anomalous
// class's reversed trigger on both. No attack knowledge goes in. Returns the summary's "verify"
// entry and appends a section to `report`; does nothing (null) without --verify.
nlohmann::json verify_cleaning(const DefenseConfig& config, const DefenseSetup& s,
                               const models::Classifier& after, std::ostream& report);

}  // namespace nad::pipeline
