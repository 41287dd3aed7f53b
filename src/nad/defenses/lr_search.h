#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "nad/data/dataset.h"
#include "nad/models/classifier.h"
#include "nad/train/trainer.h"

namespace nad::defenses {

// `--lr auto`: without any knowledge of the attack, take the largest learning rate whose
// finetuned model keeps validation accuracy (on held-out clean data) within `tolerance`
// points of the original model's. Large rates erase backdoors best, but how large a rate a
// model tolerates depends on the model and the data, which only validation can tell.
struct LrSearchOptions {
  std::vector<double> grid = {0.1, 0.05, 0.02, 0.01, 0.005, 0.002};
  double tolerance = 2.0;  // percentage points of validation accuracy
};

// One run: trains a fresh copy of the model at `lr` and returns it with its epoch records.
struct LrTrial {
  double lr = 0;
  models::Classifier model;
  std::vector<train::EpochRecord> records;
  double val_acc = 0;
  bool diverged = false;
};
using TrialRunner = std::function<LrTrial(double lr)>;

struct LrSearchResult {
  LrTrial chosen;
  double baseline_val_acc = 0;
  std::vector<nlohmann::json> tried;  // {lr, val_acc, accepted}
};

// Tries the grid from the largest rate down, stopping at the first accepted one; the runs
// that are accepted are kept whole, so the search costs nothing when the first rate fits.
// `start_below` skips rates above it. Falls back to the smallest rate when none is accepted.
LrSearchResult search_lr(const LrSearchOptions& options, double baseline_val_acc,
                         const TrialRunner& run, const data::Dataset& validation,
                         double start_below = 1e9,
                         const std::function<void(const std::string&)>& log = {});

}  // namespace nad::defenses
