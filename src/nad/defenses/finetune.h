#pragma once
#include <nlohmann/json.hpp>
#include <optional>

#include "nad/defenses/clean_subset.h"
#include "nad/defenses/lr_search.h"
#include "nad/models/classifier.h"
#include "nad/train/trainer.h"

namespace nad::defenses {

// Finetuning on the clean subset, the building block of every defense here: the teacher,
// NAD's student (with an extra loss) and the plain finetuning baseline.
struct FinetuneOptions {
  train::TrainOptions train;
  bool auto_lr = true;  // choose train.lr by search_lr on the validation part
  LrSearchOptions lr_search;
  // Early stopping: end a run after this many epochs without a better hold-out accuracy and
  // keep its best epoch's weights (0: off; needs a hold-out).
  int patience = 0;
};

struct FinetuneResult {
  models::Classifier model;
  std::vector<train::EpochRecord> records;
  double lr = 0;
  std::optional<double> validation_acc;       // after, when the clean data has a hold-out
  std::optional<double> best_validation_acc;  // the best run of the search, with auto_lr
  nlohmann::json lr_search;                   // what was tried, with auto_lr
  torch::Tensor best_validation_correct;      // the best run's per-image hold-out results
  std::optional<int> best_epoch;              // 1-based epoch kept, with patience
};

// Finetunes a copy of `model` (never the original).
FinetuneResult finetune(const models::Classifier& model, const models::ModelSpec& spec,
                        const CleanData& clean, const FinetuneOptions& options,
                        const train::EpochEvaluation& evaluate = {},
                        const train::ExtraLoss& extra_loss = {},
                        const std::function<void(const std::string&)>& log = {});

}  // namespace nad::defenses
