#include "nad/defenses/finetune.h"

#include "nad/train/evaluate.h"
#include "nad/util/error.h"

namespace nad::defenses {

FinetuneResult finetune(const models::Classifier& model, const models::ModelSpec& spec,
                        const CleanData& clean, const FinetuneOptions& options,
                        const train::EpochEvaluation& evaluate, const train::ExtraLoss& extra_loss,
                        double max_lr, const std::function<void(const std::string&)>& log) {
  auto run = [&](double lr) {
    LrTrial trial;
    trial.lr = lr;
    trial.model = models::clone_model(model, spec);
    train::TrainOptions train_options = options.train;
    train_options.lr = lr;
    try {
      trial.records =
          train::train_model(trial.model, clean.train, train_options, evaluate, extra_loss);
    } catch (const train::DivergedError& e) {
      if (!options.auto_lr) throw UserError(e.what());
      trial.diverged = true;
      return trial;
    }
    if (clean.validation.size() > 0) {
      trial.val_acc = train::accuracy(trial.model, clean.validation.to(options.train.device), 500);
    }
    return trial;
  };

  FinetuneResult result;
  if (!options.auto_lr) {
    LrTrial trial = run(options.train.lr);
    result.model = trial.model;
    result.records = std::move(trial.records);
    result.lr = trial.lr;
    return result;
  }
  if (clean.validation.size() == 0) throw UserError("--lr auto needs a validation split");
  const double baseline = train::accuracy(model, clean.validation.to(options.train.device), 500);
  LrSearchResult search =
      search_lr(options.lr_search, baseline, run, clean.validation, max_lr, log);
  if (search.chosen.diverged) {
    throw UserError(options.train.label + ": training diverged at every learning rate tried");
  }
  result.model = search.chosen.model;
  result.records = std::move(search.chosen.records);
  result.lr = search.chosen.lr;
  result.validation_acc = search.chosen.val_acc;
  result.lr_search = {{"baseline_val_acc", baseline}, {"tried", search.tried}};
  return result;
}

}  // namespace nad::defenses
