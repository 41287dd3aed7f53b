#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "nad/defenses/clean_subset.h"
#include "nad/defenses/finetune.h"
#include "nad/defenses/nad.h"
#include "nad/io/figure.h"
#include "nad/models/checkpoint.h"
#include "nad/models/registry.h"
#include "nad/pipeline/attention_figure.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/defense_setup.h"
#include "nad/pipeline/runs.h"
#include "nad/pipeline/scan.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

namespace {

// Parses --lr: "auto" or a positive number.
std::optional<double> parse_lr(const std::string& text) {
  if (text == "auto") return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(value > 0)) {
    throw UserError(flag::lr + " must be 'auto' or a positive number, not '" + text + "'");
  }
  return value;
}

}  // namespace

DefenseSetup prepare_defense(const DefenseConfig& config, bool needs_holdout) {
  check_common_options(config.common);
  check_model_file(config.model, flag::model);
  check_clean_ratio(config.common, config.clean_ratio, config.clean_indices);
  train::check_loop_options(config.epochs, config.batch_size, parse_lr(config.lr));
  // Options first, so that a mistake leaves no output folder behind.
  // The paper code's schedule is a fixed recipe: lr 0.1 (unless given), then / 10 at epoch 2.
  const train::Schedule schedule = train::parse_schedule(config.schedule);
  std::optional<double> lr = parse_lr(config.lr);
  if (schedule == train::Schedule::kReference && !lr) lr = 0.1;
  const bool auto_lr = !lr.has_value();
  if (config.select_by == "scan" && !auto_lr) {
    throw UserError(flag::select_by + " scan chooses among the rates " + flag::lr +
                    " auto tries; it needs " + flag::lr + " auto" +
                    std::string(schedule == train::Schedule::kReference
                                    ? " (" + flag::schedule + " reference fixes lr 0.1)"
                                    : ", not " + flag::lr + " " + config.lr));
  }
  if (config.verify || config.select_by == "scan") check_scan_options(config.verify_scan);
  if (config.select_by != "accuracy" && config.select_by != "scan") {
    throw UserError(flag::select_by + " must be accuracy or scan, not '" + config.select_by + "'");
  }
  if (auto_lr && !(config.validation_fraction > 0 && config.validation_fraction < 1)) {
    throw UserError(flag::validation_fraction + " must be in (0, 1)");
  }

  needs_holdout = needs_holdout || config.patience > 0;
  if (config.patience < 0) throw UserError(flag::patience + " must be >= 0");
  if (needs_holdout && !(config.validation_fraction > 0 && config.validation_fraction < 1)) {
    throw UserError(flag::validation_fraction + " must be in (0, 1)");
  }
  DefenseSetup s{open_run(config.common, /*prepares_attack=*/false, /*resumable=*/true),
                 {},
                 {},
                 {},
                 {},
                 {},
                 {}};
  s.model = load_model_for(config.model, s.context, flag::model, config.model_options);

  s.finetune.auto_lr = auto_lr;
  s.finetune.lr_search = config.lr_search;
  const double holdout = (s.finetune.auto_lr || needs_holdout) ? config.validation_fraction : 0.0;
  s.clean = draw_clean_data(s.context, config.clean_ratio, config.clean_indices, config.common.seed,
                            holdout);
  if (config.select_by == "scan" && s.clean.validation.size() < kMinScanSelectionImages) {
    throw UserError(flag::select_by +
                    " scan measures the reversed trigger on the held-out clean images "
                    "and needs at least " +
                    std::to_string(kMinScanSelectionImages) + "; this clean subset holds out " +
                    std::to_string(s.clean.validation.size()) + " (raise " + flag::clean_ratio +
                    " or " + flag::validation_fraction + ")");
  }
  defenses::write_indices(s.context.out / "clean_indices.txt", s.clean.indices);
  s.clean_json = {{"ratio", config.clean_indices.empty() ? nlohmann::json(config.clean_ratio)
                                                         : nlohmann::json(nullptr)},
                  {"size", s.clean.indices.size(0)},
                  {"train_size", s.clean.train.size()},
                  {"validation_size", s.clean.validation.size()},
                  {"indices_file", "clean_indices.txt"},
                  {"source", clean_source(s.context, config.common, config.clean_indices)}};
  s.context.log("clean subset: " + std::to_string(s.clean.indices.size(0)) + " images (" +
                std::to_string(s.clean.train.size()) + " to train on, " +
                std::to_string(s.clean.validation.size()) + " held out)");

  train::TrainOptions& t = s.finetune.train;
  t.epochs = config.epochs;
  t.batch_size = config.batch_size;
  t.lr = lr.value_or(0);
  t.momentum = config.momentum;
  t.weight_decay = config.weight_decay;
  t.schedule = schedule;
  t.augment = augment_options(config.augment, s.context.data);
  t.seed = config.common.seed;
  t.device = s.context.device;
  t.quiet = config.common.quiet;
  t.state = s.context.state;  // finetune() names each loop after its label and rate
  s.finetune.patience = config.patience;

  s.before = (*s.context.evaluator)(s.model.model);
  s.context.log("before: " + s.before.summary());
  if (config.select_by == "scan") prepare_scan_selection(config, s);
  return s;
}

void finish_defense_run(const DefenseConfig& config, const DefenseSetup& s,
                        const models::Classifier& cleaned, const nlohmann::json& config_json,
                        nlohmann::json& summary, const std::vector<train::EpochRecord>& records,
                        std::ostringstream& report) {
  summary["verify"] = verify_cleaning(config, s, cleaned, report);
  summary["seconds"] = s.context.seconds();
  write_run_files(s.context, config_json, summary, records, report.str());
}

train::EpochRecord before_record(const train::Metrics& before) {
  train::EpochRecord r;
  r.phase = "before";
  r.metrics = before;
  return r;
}

nlohmann::json defense_config_json(const DefenseConfig& config, const DefenseSetup& s) {
  return {{"common", config.common.to_json()},
          {"model", config.model},
          {"model_options", config.model_options.to_json()},
          {"clean_ratio", config.clean_ratio},
          {"clean_indices", config.clean_indices},
          {"lr", config.lr},
          {"lr_grid", config.lr_search.grid},
          {"lr_tolerance", config.lr_search.tolerance},
          {"lr_noise_margin", config.lr_search.noise_margin},
          {"lr_rule",
           "the largest rate of lr_grid (ascending, stopping at the first rejection) whose "
           "hold-out accuracy is at most lr_tolerance points plus lr_noise_margin standard errors "
           "of the paired difference below the best finetuned run's; NAD's student steps down "
           "from the teacher's rate by the same test against the teacher search's best"},
          {"select_by", config.select_by},
          {"select_rule",
           config.select_by == "scan"
               ? nlohmann::json(
                     "among the accepted rates, the largest whose model the reversed trigger of "
                     "the scan's most anomalous class (scan-before) sends at most max(1 point, "
                     "lr_noise_margin binomial standard errors) more held-out images to that "
                     "class than the least backdoored candidate")
               : nlohmann::json("the largest accepted rate")},
          {"validation_fraction", config.validation_fraction},
          {"patience", config.patience},
          {"train", s.finetune.train.to_json()},
          {"verify", config.verify ? config.verify_scan.to_json() : nlohmann::json(nullptr)}};
}

nlohmann::json best_epoch_json(const defenses::FinetuneResult& run) {
  return run.best_epoch ? nlohmann::json(*run.best_epoch) : nlohmann::json(nullptr);
}

std::string lr_text(const defenses::FinetuneResult& run) {
  std::ostringstream out;
  out << run.lr;
  if (!run.lr_search.is_null()) out << " (chosen by " + flag::lr + " auto)";
  return out.str();
}

nlohmann::json run_finetune(const DefenseConfig& config) {
  DefenseSetup s = prepare_defense(config);
  s.finetune.train.label = "finetune";
  nlohmann::json config_json = defense_config_json(config, s);
  config_json["command"] = "finetune";
  write_or_check_config(s.context, config_json);

  const auto& evaluator = *s.context.evaluator;
  defenses::FinetuneResult run = defenses::finetune(
      s.model.model, s.model.spec, s.clean, s.finetune,
      [&](const models::Classifier& m) { return evaluator(m); }, {},
      [&](const std::string& line) { s.context.log(line); });
  const train::Metrics after = evaluator(run.model);
  models::save_checkpoint(s.context.out / "model.pt", run.model, s.model.spec);

  std::vector<train::EpochRecord> records{before_record(s.before)};
  records.insert(records.end(), run.records.begin(), run.records.end());
  nlohmann::json summary = {{"before", s.before.to_json()},
                            {"after", after.to_json()},
                            {"seconds", s.context.seconds()},
                            {"clean_subset", s.clean_json},
                            {"lr", run.lr},
                            {"lr_search", run.lr_search},
                            {"best_epoch", best_epoch_json(run)}};
  std::ostringstream report;
  report << "# nad finetune\n\nFinetuned `" << config.model << "` on " << s.clean.indices.size(0)
         << " clean images for " << config.epochs << " epochs, lr " << lr_text(run) << ", in "
         << static_cast<int>(s.context.seconds()) << " s.\n\n"
         << train::metrics_table({{"before", s.before}, {"after finetuning", after}});
  finish_defense_run(config, s, run.model, config_json, summary, records, report);
  s.context.log("after: " + after.summary());
  return summary;
}

namespace {

// --groups naming stages that are not the model's default attention groups (torchvision's
// families choose among their stages): the model rebuilt with those stages as its groups. The
// weights do not change; only which outputs the forward pass returns.
void use_named_stages(models::LoadedModel& loaded, const std::vector<std::string>& groups,
                      const RunContext& context) {
  const std::vector<std::string> current = loaded.model->group_names();
  bool other = false;
  for (const std::string& group : groups) {
    const bool number = !group.empty() && std::all_of(group.begin(), group.end(), ::isdigit);
    other |= !number && std::find(current.begin(), current.end(), group) == current.end();
  }
  if (!other) return;
  models::ModelSpec spec = loaded.spec;
  spec.groups = groups;
  models::Classifier rebuilt = models::clone_model(loaded.model, spec);
  if (rebuilt->group_names() == current) return;  // fixed groups: select_groups names them
  loaded.model = rebuilt;
  loaded.spec = spec;
  std::string names;
  for (const auto& name : loaded.model->group_names()) names += (names.empty() ? "" : ", ") + name;
  context.log("attention groups (" + flag::groups + "): " + names);
}

}  // namespace

nlohmann::json run_erase(const EraseConfig& config) {
  const DefenseConfig& dc = config.defense;
  if (!config.teacher.empty()) check_model_file(config.teacher, flag::teacher);
  if (config.teacher_epochs < 0) throw UserError(flag::teacher_epochs + " must be >= 0");
  if (!(config.power > 0)) throw UserError(flag::power + " must be positive");
  DefenseSetup s = prepare_defense(dc);

  use_named_stages(s.model, config.groups, s.context);
  if (s.model.model->group_names().empty()) {
    throw UserError(flag::model + " " + dc.model +
                    ": no attention groups (no submodule that forward calls once gives a 4-D map "
                    "larger than 1x1); name them with " +
                    flag::groups);
  }

  defenses::NadOptions options;
  options.student = s.finetune;
  options.student.train.label = "student";
  options.teacher = s.finetune;
  options.teacher.train.label = "teacher";
  options.teacher.train.epochs = config.teacher_epochs;
  if (!config.betas.empty() && config.betas.size() != s.model.model->group_names().size()) {
    throw UserError(flag::beta + " needs " + std::to_string(s.model.model->group_names().size()) +
                    " values for this model (one per group), got " +
                    std::to_string(config.betas.size()));
  }
  options.betas = defenses::select_groups(
      config.betas.empty() ? models::default_betas(s.model.model) : config.betas,
      s.model.model->group_names(), config.groups);
  options.power = config.power;
  options.attention = defenses::parse_attention_kind(config.attention);

  models::Classifier teacher;
  std::string teacher_source = "finetuned from the model";
  if (!config.teacher.empty()) {
    ModelFileOptions teacher_options = config.defense.model_options;
    teacher_options.arch = config.teacher_arch;  // the teacher's architecture may differ
    models::LoadedModel loaded_teacher =
        load_model_for(config.teacher, s.context, flag::teacher, teacher_options);
    use_named_stages(loaded_teacher, config.groups, s.context);
    teacher = loaded_teacher.model;
    teacher_source = config.teacher;
    defenses::check_teacher_fits(
        teacher, s.model.model,
        data::to_input(s.clean.train.images.slice(0, 0, 2).to(s.context.device)), options.betas,
        flag::teacher + " " + config.teacher);
  }

  nlohmann::json config_json = defense_config_json(dc, s);
  config_json["command"] = "erase";
  config_json["teacher"] = config.teacher;
  config_json["teacher_arch"] = config.teacher_arch;
  config_json["teacher_epochs"] = config.teacher_epochs;
  config_json["betas"] = options.betas;  // zero for the groups not distilled
  config_json["groups"] = s.model.model->group_names();
  config_json["distilled_groups"] = config.groups;
  config_json["power"] = config.power;
  config_json["attention"] = config.attention;
  write_or_check_config(s.context, config_json);

  const auto& evaluator = *s.context.evaluator;
  defenses::NadResult result = defenses::neural_attention_distillation(
      s.model.model, s.model.spec, s.clean, options, teacher,
      [&](const models::Classifier& m) { return evaluator(m); },
      [&](const std::string& line) { s.context.log(line); });
  const train::Metrics teacher_metrics = evaluator(result.teacher);
  const train::Metrics after = evaluator(result.student);
  models::save_checkpoint(s.context.out / "model.pt", result.student, s.model.spec);
  if (config.teacher.empty())
    models::save_checkpoint(s.context.out / "teacher.pt", result.teacher, s.model.spec);

  // The paper's picture: where each model looks on triggered inputs, before and after.
  if (io::figures_available()) {
    write_attention_png(
        s.context.out / "attention.png", s.context,
        {{"backdoored", s.model.model}, {"teacher", result.teacher}, {"after NAD", result.student}},
        figure_rows(s.context, 4, dc.common.seed), config.power, options.attention);
  }

  std::vector<train::EpochRecord> records{before_record(s.before)};
  records.insert(records.end(), result.teacher_run.records.begin(),
                 result.teacher_run.records.end());
  records.insert(records.end(), result.student_run.records.begin(),
                 result.student_run.records.end());

  nlohmann::json summary = {
      {"before", s.before.to_json()},
      {"after", after.to_json()},
      {"teacher", teacher_metrics.to_json()},
      {"teacher_source", teacher_source},
      {"seconds", s.context.seconds()},
      {"clean_subset", s.clean_json},
      {"lr",
       {{"teacher",
         config.teacher.empty() ? nlohmann::json(result.teacher_run.lr) : nlohmann::json(nullptr)},
        {"student", result.student_run.lr}}},
      {"lr_search",
       {{"teacher", result.teacher_run.lr_search}, {"student", result.student_run.lr_search}}},
      {"best_epoch",
       {{"teacher", best_epoch_json(result.teacher_run)},
        {"student", best_epoch_json(result.student_run)}}}};
  std::ostringstream report;
  report << "# nad erase\n\nNeural Attention Distillation of `" << dc.model << "` ("
         << s.model.spec.arch << ") on " << s.clean.indices.size(0) << " clean images of "
         << s.context.data.name << ". Teacher: " << teacher_source;
  if (config.teacher.empty()) {
    report << ", " << config.teacher_epochs << " epochs at lr " << lr_text(result.teacher_run);
  }
  report << ". Student: " << dc.epochs << " epochs at lr " << lr_text(result.student_run)
         << ", schedule " << dc.schedule << ", betas " << config_json["betas"].dump()
         << " on groups " << config_json["groups"].dump() << ". Took "
         << static_cast<int>(s.context.seconds()) << " s.\n\n"
         << train::metrics_table({{"before (backdoored)", s.before},
                                  {"teacher", teacher_metrics},
                                  {"after NAD", after}});
  if (io::figures_available()) report << "\n![attention maps](attention.png)\n";
  finish_defense_run(dc, s, result.student, config_json, summary, records, report);
  s.context.log("teacher: " + teacher_metrics.summary());
  s.context.log("after: " + after.summary());
  return summary;
}

}  // namespace nad::pipeline
