#include <sstream>

#include "nad/defenses/prune.h"
#include "nad/pipeline/defense_setup.h"
#include "nad/pipeline/runs.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json run_prune(const PruneConfig& config) {
  if (!(config.prune_ratio > 0 && config.prune_ratio <= 1)) {
    throw UserError(flag::prune_ratio + " must be in (0, 1], not " +
                    std::to_string(config.prune_ratio));
  }
  if (config.curve_points < 2) throw UserError(flag::curve_points + " must be at least 2");
  DefenseSetup s = prepare_defense(config.defense, /*needs_holdout=*/true);
  nlohmann::json config_json = defense_config_json(config.defense, s);
  config_json["command"] = "prune";
  config_json["max_acc_drop"] = config.max_acc_drop;
  config_json["prune_ratio"] = config.prune_ratio;
  config_json["curve_points"] = config.curve_points;
  config_json["prune_layer"] = config.prune_layer;
  write_or_check_config(s.context, config_json);

  const auto& evaluator = *s.context.evaluator;
  auto evaluate = [&](const models::Classifier& m) { return evaluator(m); };
  auto log = [&](const std::string& line) { s.context.log(line); };
  defenses::PruneOptions options;
  options.max_acc_drop = config.max_acc_drop;
  options.prune_ratio = config.prune_ratio;
  options.curve_points = config.curve_points;
  options.layer = config.prune_layer;
  options.batch_size = s.context.eval_batch_size;
  defenses::PruneResult pruned = defenses::prune_channels(s.model.model, s.model.spec, s.clean,
                                                          options, s.context.device, evaluate, log);
  const int64_t channels = pruned.keep.size(0);
  const train::Metrics after_pruning = evaluator(pruned.model);
  const std::string& layer = pruned.target.layer;
  s.context.log("pruned " + std::to_string(pruned.pruned) + " of " + std::to_string(channels) +
                " channels of " + layer + ": " + after_pruning.summary());

  // Finetune with the pruned channels' weights held at zero.
  const torch::Tensor keep = pruned.keep;
  s.finetune.train.label = "finetune";
  s.finetune.train.after_step = [keep,
                                 weights = pruned.target.weights](const models::Classifier& m) {
    defenses::apply_channel_mask(m, keep, weights);
  };
  defenses::FinetuneResult run =
      defenses::finetune(pruned.model, s.model.spec, s.clean, s.finetune, evaluate, {}, log);
  const train::Metrics after = evaluator(run.model);
  models::save_checkpoint(s.context.out / "model.pt", run.model, s.model.spec);

  nlohmann::json curve = nlohmann::json::array();
  std::ostringstream csv;
  csv << "pruned,fraction,val_acc,clean_acc,asr,robust_acc\n";
  for (const auto& point : pruned.path) {
    nlohmann::json row = {
        {"pruned", point.pruned}, {"fraction", point.fraction}, {"val_acc", point.val_acc}};
    csv << point.pruned << ',' << point.fraction << ',' << point.val_acc;
    if (point.test) {
      row["test"] = point.test->to_json();
      csv << ',' << point.test->clean_acc << ',' << percent_or_dash(point.test->asr) << ','
          << percent_or_dash(point.test->robust_acc);
    } else {
      csv << ",,,";
    }
    csv << '\n';
    curve.push_back(row);
  }
  write_text_atomic(s.context.out / "prune_curve.csv", csv.str());
  std::vector<int64_t> pruned_channels;
  for (int64_t k = 0; k < pruned.pruned; ++k) {
    pruned_channels.push_back(pruned.order[k].item<int64_t>());
  }

  std::vector<train::EpochRecord> records{before_record(s.before)};
  records.insert(records.end(), run.records.begin(), run.records.end());
  nlohmann::json summary = {{"before", s.before.to_json()},
                            {"pruned", after_pruning.to_json()},
                            {"after", after.to_json()},
                            {"layer", layer},
                            {"channels", channels},
                            {"pruned_count", pruned.pruned},
                            {"pruned_channels", pruned_channels},
                            {"baseline_val_acc", pruned.baseline_val_acc},
                            {"curve", curve},
                            {"seconds", s.context.seconds()},
                            {"clean_subset", s.clean_json},
                            {"lr", run.lr},
                            {"lr_search", run.lr_search},
                            {"best_epoch", best_epoch_json(run)}};
  std::ostringstream report;
  report << "# nad prune (Fine-pruning)\n\nPruned " << pruned.pruned << " of " << channels
         << " channels of `" << layer << "` of `" << config.defense.model << "` (hold-out accuracy "
         << pruned.baseline_val_acc << "% before, at most " << config.max_acc_drop
         << " points lost), then finetuned on " << s.clean.indices.size(0) << " clean images for "
         << config.defense.epochs << " epochs, lr " << lr_text(run) << ", in "
         << static_cast<int>(s.context.seconds()) << " s. The curve is in prune_curve.csv.\n\n"
         << train::metrics_table(
                {{"before", s.before}, {"pruned", after_pruning}, {"pruned + finetuned", after}});
  finish_defense_run(config.defense, s, run.model, config_json, summary, records, report);
  s.context.log("after: " + after.summary());
  return summary;
}

}  // namespace nad::pipeline
