#include <sstream>

#include "nad/attacks/sample_grid.h"
#include "nad/defenses/clean_subset.h"
#include "nad/models/checkpoint.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json run_train(const TrainConfig& config) {
  check_common_options(config.common);
  models::check_arch(config.arch);
  const models::InputNorm input_norm = models::parse_input_norm(config.input_norm);
  train::check_loop_options(config.epochs, config.batch_size, config.lr);
  if (!config.prep.clean_model.empty())
    check_model_file(config.prep.clean_model, flag::clean_model);
  if (!config.exclude_indices.empty())
    check_model_file(config.exclude_indices, flag::exclude_indices);
  RunContext context = open_run(config.common, /*prepares_attack=*/true, /*resumable=*/true);
  const data::DatasetPair& data = context.data;
  // The trojan trigger made here is recorded in the configuration as the file it went to.
  CommonConfig common = config.common;
  const nlohmann::json prep_record =
      prepare_attack(context, common.attack, config.prep, config.arch, common);

  // Poison once, eagerly; the poisoned rows are saved so the run can be audited.
  data::Dataset train_set = data.train;
  nlohmann::json poison_info = nullptr;
  torch::Tensor poisoned_rows = torch::empty({0}, torch::kLong);
  if (context.attack) {
    attacks::PoisonedSet poisoned = context.attack->poison(data.train, common.seed);
    poisoned_rows = poisoned.indices.to(torch::kLong);
    train_set = poisoned.data;
    defenses::write_indices(context.out / "poisoned_indices.txt", poisoned.indices);
    poison_info = {{"count", poisoned.indices.size(0)},
                   {"indices_file", "poisoned_indices.txt"},
                   {"samples", "samples.png"}};
    if (poisoned.noise_indices.size(0) > 0) {
      defenses::write_indices(context.out / "noise_indices.txt", poisoned.noise_indices);
      poison_info["noise_count"] = poisoned.noise_indices.size(0);
      poison_info["noise_indices_file"] = "noise_indices.txt";
      context.log("noise mode: " + std::to_string(poisoned.noise_indices.size(0)) +
                  " more warped with noise, labels kept");
    }
    attacks::write_sample_grid(context.out / "samples.png", data.train, *context.attack,
                               data.num_classes());
    context.log("poisoned " + std::to_string(poisoned.indices.size(0)) + " of " +
                std::to_string(train_set.size()) + " training images (" + common.attack.name + ")");
  }

  // Rows a data defense flagged leave before training (after poisoning, so that the indices are
  // the poisoned set's).
  nlohmann::json excluded_info = nullptr;
  if (!config.exclude_indices.empty()) {
    const torch::Tensor excluded = defenses::read_indices(config.exclude_indices, train_set.size());
    torch::Tensor keep = torch::ones({train_set.size()}, torch::kBool);
    keep.index_fill_(0, excluded, false);  // read_indices: int64, never empty
    const int64_t poisoned_kept = keep.index_select(0, poisoned_rows).sum().item<int64_t>();
    train_set = train_set.select(keep.nonzero().squeeze(1));
    excluded_info = {{"file", config.exclude_indices},
                     {"excluded", excluded.numel()},
                     {"poisoned_excluded", poisoned_rows.numel() - poisoned_kept},
                     {"poisoned_kept", poisoned_kept},
                     {"trained_on", train_set.size()}};
    context.log("left out " + std::to_string(excluded.numel()) + " rows (" +
                config.exclude_indices + "), " + std::to_string(poisoned_kept) +
                " poisoned ones remain; training on " + std::to_string(train_set.size()));
  }

  models::ModelSpec spec{config.arch,         data.train.channels(), data.num_classes(),
                         data.train.height(), data.train.width(),    input_norm};
  torch::manual_seed(common.seed);
  models::Classifier model = models::create_model(spec);

  train::TrainOptions options;
  options.epochs = config.epochs;
  options.batch_size = config.batch_size;
  options.lr = config.lr;
  options.momentum = config.momentum;
  options.weight_decay = config.weight_decay;
  options.schedule = train::parse_schedule(config.schedule);
  options.milestones = config.milestones;
  if (options.schedule == train::Schedule::kStep && options.milestones.empty()) {
    options.milestones = {config.epochs / 2, config.epochs * 3 / 4};
  }
  options.augment = augment_options(config.augment, data);
  options.seed = common.seed;
  options.device = context.device;
  options.quiet = common.quiet;
  options.state = context.state;
  options.state_key = "train";

  nlohmann::json config_json = {
      {"command", "train"},         {"common", common.to_json()},
      {"arch", config.arch},        {"input_norm", input_norm.to_json()},
      {"train", options.to_json()}, {"exclude_indices", config.exclude_indices}};
  if (!prep_record.is_null()) config_json["attack_prep"] = prep_record;
  write_or_check_config(context, config_json);

  const auto& evaluator = *context.evaluator;
  std::vector<train::EpochRecord> records = train::train_model(
      model, train_set, options, [&](const models::Classifier& m) { return evaluator(m); });
  const train::Metrics final_metrics = records.empty() ? evaluator(model) : records.back().metrics;

  models::save_checkpoint(context.out / "model.pt", model, spec);
  nlohmann::json summary = final_metrics.to_json();
  summary["seconds"] = context.seconds();
  summary["epochs"] = config.epochs;
  summary["arch"] = config.arch;
  summary["input_norm"] = input_norm.to_json();
  summary["dataset"] = data.name;
  summary["attack"] = common.attack.to_json();
  summary["poisoned"] = poison_info;
  summary["excluded"] = excluded_info;

  std::ostringstream report;
  report << "# nad train\n\n"
         << "Trained `" << config.arch << "` on " << data.name << " for " << config.epochs
         << " epochs (attack: " << common.attack.name << ", seed " << common.seed << ") in "
         << static_cast<int>(context.seconds()) << " s.\n\n"
         << train::metrics_table({{"trained model", final_metrics}});
  write_run_files(context, config_json, summary, records, report.str());
  context.log("final: " + final_metrics.summary());
  return summary;
}

nlohmann::json run_eval(const EvalConfig& config) {
  RunContext context = open_run(config.common);
  models::LoadedModel loaded =
      load_model_for(config.model, context, flag::model, config.model_options);
  const train::Metrics metrics = (*context.evaluator)(loaded.model);
  nlohmann::json summary = metrics.to_json();
  summary["seconds"] = context.seconds();
  summary["model"] = config.model;
  summary["arch"] = loaded.spec.arch;
  summary["attack"] = config.common.attack.to_json();
  nlohmann::json config_json = {{"command", "eval"},
                                {"common", config.common.to_json()},
                                {"model", config.model},
                                {"model_options", config.model_options.to_json()}};
  std::ostringstream report;
  report << "# nad eval\n\n`" << config.model << "` (" << loaded.spec.arch << ") on "
         << context.data.name << ", ASR from "
         << (context.evaluator->has_attack() ? context.asr_source : "no attack") << ".\n\n"
         << train::metrics_table({{"model", metrics}});
  write_run_files(context, config_json, summary, {}, report.str());
  context.log(metrics.summary());
  return summary;
}

}  // namespace nad::pipeline
