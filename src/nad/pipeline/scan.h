#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nad/attacks/attack.h"
#include "nad/data/dataset.h"
#include "nad/defenses/neural_cleanse.h"
#include "nad/models/classifier.h"
#include "nad/pipeline/config.h"
#include "nad/train/state.h"

// Neural Cleanse on one model, with its figures: what `nad scan` runs, and the defenses'
// --verify before and after cleaning.
namespace nad::pipeline {

struct ScanResult {
  std::vector<defenses::ReversedTrigger> triggers;
  // The norms the outlier test saw: a class whose mask never reached the success threshold
  // counts as the whole image (H x W), since no small trigger was found for it.
  std::vector<double> norms;
  // The outlier test on both scales; `anomaly` is the one the options chose, which gives the
  // verdict.
  defenses::AnomalyResult linear, logarithmic, anomaly;
  int64_t most_anomalous = 0;  // the class with the largest anomaly index
  nlohmann::json json;         // what scan.json holds
};

// Scans `model` on clean `optimise` / `holdout` images and writes into `dir`: scan.json,
// triggers.png and norms.png (when figures are available), and trigger-<k>.png / mask-<k>.png
// as each class finishes. `attack` (may be null) is used only to report whether the flagged
// class is its target. `state` (may be null) keeps the optimisation resumable under `key`.
ScanResult scan_model(const models::Classifier& model, const std::vector<std::string>& class_names,
                      const data::Dataset& optimise, const data::Dataset& holdout,
                      const ScanOptions& options, const std::filesystem::path& dir,
                      const attacks::Attack* attack, std::shared_ptr<const train::StateStore> state,
                      const std::string& key, bool quiet);

// The per-class table and verdict, as markdown.
std::string scan_report(const ScanResult& result, const std::vector<std::string>& class_names);

// Checks the scan options before anything is loaded.
void check_scan_options(const ScanOptions& options);

}  // namespace nad::pipeline
