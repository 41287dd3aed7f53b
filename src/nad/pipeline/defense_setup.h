#pragma once
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "nad/defenses/clean_subset.h"
#include "nad/defenses/finetune.h"
#include "nad/models/checkpoint.h"
#include "nad/pipeline/config.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/scan.h"

// What every defense run (finetune, erase, prune, mcr) sets up the same way.
namespace nad::pipeline {

struct DefenseSetup {
  RunContext context;
  models::LoadedModel model;
  defenses::CleanData clean;
  defenses::FinetuneOptions finetune;  // epochs, lr and schedule of the main run
  train::Metrics before;
  nlohmann::json clean_json;
  // --select-by scan: the scan of the model before the defense, on clean.train (optimised) and
  // clean.validation (checked, and where candidates are measured); --verify reuses it.
  std::shared_ptr<const ScanResult> before_scan;
};

// --select-by scan needs this many held-out clean images: the reversed trigger's success on
// fewer would be decided by chance (one image is more than a point).
inline constexpr int64_t kMinScanSelectionImages = 100;

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
// --select-by scan: scans the model before the defense into out/scan-before and sets the probe
// of s.finetune's --lr auto (the reversed trigger of the most anomalous class, measured on the
// held-out images).
void prepare_scan_selection(const DefenseConfig& config, DefenseSetup& s);

nlohmann::json verify_cleaning(const DefenseConfig& config, const DefenseSetup& s,
                               const models::Classifier& after, std::ostream& report);

// The end every defense run shares: --verify on `cleaned` (into summary["verify"] and the
// report), the run's seconds, then config.json, summary.json, metrics.csv and report.md.
void finish_defense_run(const DefenseConfig& config, const DefenseSetup& s,
                        const models::Classifier& cleaned, const nlohmann::json& config_json,
                        nlohmann::json& summary, const std::vector<train::EpochRecord>& records,
                        std::ostringstream& report);

}  // namespace nad::pipeline
