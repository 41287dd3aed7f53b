#include "nad/defenses/finetune.h"

#include <cstdio>
#include <map>

#include "nad/io/torch_file.h"
#include "nad/models/checkpoint.h"
#include "nad/train/evaluate.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::defenses {

namespace fs = std::filesystem;

namespace {
std::vector<torch::Tensor> copy_state(const models::Classifier& model) {
  std::vector<torch::Tensor> state;
  for (const auto& t : model->parameters()) state.push_back(t.detach().clone());
  for (const auto& t : model->buffers()) state.push_back(t.detach().clone());
  return state;
}

fs::path epoch_weights_file(const train::TrainOptions& options, size_t epoch) {
  fs::path file = options.state->file(options.state_key);
  file.replace_extension(".epoch" + std::to_string(epoch + 1) + ".weights");
  return file;
}

void restore_state(const models::Classifier& model, const std::vector<torch::Tensor>& state) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& t : model->parameters()) t.copy_(state[i++]);
  for (auto& t : model->buffers()) t.copy_(state[i++]);
}

// What a run keeps beside its loop's state for early stopping: the best hold-out accuracy so
// far, its epoch's weights, and the epochs since.
struct EarlyStop {
  std::vector<torch::Tensor> best_state;
  double best_acc = -1;
  int since_best = 0;
};

// Early stopping keeps the best epoch by hold-out accuracy. The untrained model is not a
// candidate: a backdoored model often scores best on clean data, and keeping it would undo the
// defense.
void stop_early(train::TrainOptions& train_options, LrTrial& trial, EarlyStop& kept,
                const data::Dataset& validation, int patience) {
  train_options.keep_going = [&trial, &kept, &validation, patience](const models::Classifier& m,
                                                                    int epoch) {
    const double acc =
        train::accuracy(m, validation, train::default_eval_batch_size(validation.images.device()));
    if (acc > kept.best_acc) {
      kept.best_acc = acc;
      kept.best_state = copy_state(m);
      trial.best_epoch = epoch + 1;
      kept.since_best = 0;
      return true;
    }
    return ++kept.since_best < patience;
  };
}

// Resumable: each rate's run is its own loop in the state folder, with what early stopping and
// the search keep (the best epoch's weights, each epoch's weights during a search).
void save_trial_with_state(train::TrainOptions& train_options, LrTrial& trial, EarlyStop& kept,
                           const std::string& label, torch::Device device) {
  char key[64];
  std::snprintf(key, sizeof key, "-lr%.6g", trial.lr);
  train_options.state_key = label + key;
  const train::TrainOptions& keyed = train_options;
  train_options.save_extra = [&trial, &kept, &keyed](train::LoopState& state) {
    state.extra = {{"best_acc", kept.best_acc},
                   {"since_best", kept.since_best},
                   {"best_epoch", trial.best_epoch},
                   {"best_state", kept.best_state.size()},
                   {"epoch_weights", trial.epoch_weights.size()}};
    for (size_t i = 0; i < kept.best_state.size(); ++i)
      state.extra_tensors.emplace_back("best." + std::to_string(i), kept.best_state[i].cpu());
    // Each epoch's weights go to a file of their own, once, rather than into every state.
    for (size_t e = 0; e < trial.epoch_weights.size(); ++e) {
      const fs::path file = epoch_weights_file(keyed, e);
      if (fs::exists(file)) continue;
      models::NamedTensors named;
      for (size_t i = 0; i < trial.epoch_weights[e].size(); ++i)
        named.emplace_back(std::to_string(i), trial.epoch_weights[e][i].cpu());
      io::write_torch_state_dict(file, named, io::TorchFormat::kZip);
    }
  };
  train_options.load_extra = [&trial, &kept, &keyed, device](const train::LoopState& state) {
    if (state.extra.is_null()) return;
    std::map<std::string, torch::Tensor> named(state.extra_tensors.begin(),
                                               state.extra_tensors.end());
    auto take = [&](const std::string& name) {
      auto it = named.find(name);
      if (it == named.end()) {
        throw UserError("state file of " + keyed.state_key + ": no '" + name + "'");
      }
      return it->second.to(device);
    };
    kept.best_acc = state.extra.at("best_acc").get<double>();
    kept.since_best = state.extra.at("since_best").get<int>();
    trial.best_epoch = state.extra.at("best_epoch").get<int>();
    kept.best_state.clear();
    const size_t best_count = state.extra.at("best_state").get<size_t>();
    for (size_t i = 0; i < best_count; ++i)
      kept.best_state.push_back(take("best." + std::to_string(i)));
    trial.epoch_weights.clear();
    const size_t epochs = state.extra.at("epoch_weights").get<size_t>();
    const size_t tensors = copy_state(trial.model).size();
    for (size_t e = 0; e < epochs; ++e) {
      const fs::path file = epoch_weights_file(keyed, e);
      const io::TorchStateDict saved = io::read_torch_state_dict(file);
      if (saved.tensors.size() != tensors) {
        throw UserError("state file '" + file.string() + "' does not fit the model");
      }
      std::vector<torch::Tensor> weights;
      for (const auto& named_tensor : saved.tensors)
        weights.push_back(named_tensor.second.to(device));
      trial.epoch_weights.push_back(std::move(weights));
    }
  };
}

// One finetuning run at rate `lr` on a copy of the model. With a search, most runs are thrown
// away: each epoch's weights are kept (small next to the data) and only the chosen run is
// measured on the test data afterwards (measure_chosen_run). A diverged run of a search is a
// trial marked diverged; without a search it throws.
LrTrial finetune_at(double lr, const models::Classifier& model, const models::ModelSpec& spec,
                    const CleanData& clean, const data::Dataset& validation,
                    const FinetuneOptions& options, const train::EpochEvaluation& evaluate,
                    const train::ExtraLoss& extra_loss) {
  const bool search = options.auto_lr;
  LrTrial trial;
  trial.lr = lr;
  trial.model = models::clone_model(model, spec);
  train::TrainOptions train_options = options.train;
  train_options.lr = lr;
  EarlyStop kept;
  if (options.patience > 0) stop_early(train_options, trial, kept, validation, options.patience);
  train::EpochEvaluation per_epoch = evaluate;
  if (search && evaluate) {
    per_epoch = [&trial](const models::Classifier& m) -> std::optional<train::Metrics> {
      trial.epoch_weights.push_back(copy_state(m));
      return std::nullopt;
    };
  }
  if (train_options.state) {
    save_trial_with_state(train_options, trial, kept, options.train.label, options.train.device);
  }
  try {
    trial.records =
        train::train_model(trial.model, clean.train, train_options, per_epoch, extra_loss);
  } catch (const train::DivergedError& e) {
    if (!search) throw;
    trial.diverged = true;
    return trial;
  }
  if (!kept.best_state.empty()) restore_state(trial.model, kept.best_state);
  if (validation.size() > 0) {
    trial.val_correct = train::predict(trial.model, validation.images,
                                       train::default_eval_batch_size(validation.images.device()))
                            .eq(validation.labels)
                            .cpu();
    trial.val_acc = 100.0 * trial.val_correct.sum().item<double>() /
                    static_cast<double>(trial.val_correct.numel());
  }
  return trial;
}

// The chosen run of a search, measured on the test data epoch by epoch from its kept weights.
void measure_chosen_run(const LrTrial& chosen, std::vector<train::EpochRecord>& records,
                        const models::ModelSpec& spec, const std::string& label,
                        const train::EpochEvaluation& evaluate,
                        const std::function<void(const std::string&)>& log) {
  models::Classifier replay = models::clone_model(chosen.model, spec);
  if (log) {
    char line[120];
    std::snprintf(line, sizeof line,
                  "measuring each epoch of the chosen run (lr %.4g) on the test data", chosen.lr);
    log(line);
  }
  for (size_t e = 0; e < records.size(); ++e) {
    restore_state(replay, chosen.epoch_weights[e]);
    if (auto metrics = evaluate(replay)) {
      records[e].metrics = *metrics;
      if (log) {
        log(label + " epoch " + std::to_string(e + 1) + "/" + std::to_string(records.size()) +
            ": " + metrics->summary());
      }
    }
  }
}

}  // namespace

FinetuneResult finetune(const models::Classifier& model, const models::ModelSpec& spec,
                        const CleanData& clean, const FinetuneOptions& options,
                        const train::EpochEvaluation& evaluate, const train::ExtraLoss& extra_loss,
                        const std::function<void(const std::string&)>& log) {
  const torch::Device device = options.train.device;
  const data::Dataset validation = clean.validation.to(device);
  if (options.patience < 0) throw UserError(flag::patience + " must be >= 0");
  if (options.patience > 0 && validation.size() == 0) {
    throw UserError(flag::patience + " needs a hold-out part of the clean subset (" +
                    flag::validation_fraction + ")");
  }
  auto run = [&](double lr) {
    return finetune_at(lr, model, spec, clean, validation, options, evaluate, extra_loss);
  };

  FinetuneResult result;
  if (!options.auto_lr) {
    LrTrial trial = run(options.train.lr);
    result.model = trial.model;
    result.records = std::move(trial.records);
    result.lr = trial.lr;
    if (validation.size() > 0) result.validation_acc = trial.val_acc;
    if (trial.best_epoch > 0) result.best_epoch = trial.best_epoch;
    return result;
  }
  if (validation.size() == 0) throw UserError(flag::lr + " auto needs a validation split");
  const double baseline = train::accuracy(
      model, validation, train::default_eval_batch_size(validation.images.device()));
  LrSearchResult found = search_lr(options.lr_search, baseline, run, log);
  if (found.chosen.diverged) {
    throw UserError(options.train.label + ": training diverged at every learning rate tried");
  }
  result.model = found.chosen.model;
  result.records = std::move(found.chosen.records);
  if (evaluate && found.chosen.epoch_weights.size() == result.records.size()) {
    measure_chosen_run(found.chosen, result.records, spec, options.train.label, evaluate, log);
  }
  result.lr = found.chosen.lr;
  if (found.chosen.best_epoch > 0) result.best_epoch = found.chosen.best_epoch;
  result.validation_acc = found.chosen.val_acc;
  result.lr_search = {{"baseline_val_acc", baseline},
                      {"tolerance", options.lr_search.tolerance},
                      {"noise_margin", options.lr_search.noise_margin},
                      {"tried", found.tried}};
  result.best_validation_correct = found.best_val_correct;
  if (options.lr_search.step_down_from) {
    result.lr_search["reference_val_acc"] = options.lr_search.reference_val_acc;
  }
  for (const auto& t : found.tried) {
    if (t["val_acc"].is_number()) {
      result.best_validation_acc =
          std::max(result.best_validation_acc.value_or(0.0), t["val_acc"].get<double>());
    }
  }
  return result;
}

}  // namespace nad::defenses
