#include <cstdio>
#include <sstream>

#include "nad/defenses/mcr.h"
#include "nad/pipeline/defense_setup.h"
#include "nad/pipeline/runs.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json run_mcr(const McrConfig& config) {
  if (config.points < 2) throw UserError(flag::points + " must be at least 2");
  if (!(config.t >= 0 && config.t <= 1)) throw UserError(flag::t + " must be in [0, 1]");
  if (config.curve_epochs < 0) throw UserError(flag::curve_epochs + " must be >= 0");
  if (!(config.curve_lr > 0)) throw UserError(flag::curve_lr + " must be positive");
  if (!config.end_model.empty()) check_model_file(config.end_model, flag::end_model);
  DefenseSetup s = prepare_defense(config.defense);
  nlohmann::json config_json = defense_config_json(config.defense, s);
  config_json["command"] = "mcr";
  config_json["end_model"] = config.end_model;
  config_json["curve_epochs"] = config.curve_epochs;
  config_json["curve_lr"] = config.curve_lr;
  config_json["points"] = config.points;
  config_json["t"] = config.t;
  write_or_check_config(s.context, config_json);

  const auto& evaluator = *s.context.evaluator;
  auto evaluate = [&](const models::Classifier& m) { return evaluator(m); };
  auto log = [&](const std::string& line) { s.context.log(line); };
  const models::ModelSpec& spec = s.model.spec;

  // The far end: a given model of the same architecture, or --model finetuned on the clean data.
  models::Classifier end;
  std::vector<train::EpochRecord> records{before_record(s.before)};
  nlohmann::json end_json;
  if (!config.end_model.empty()) {
    models::LoadedModel loaded =
        load_model_for(config.end_model, s.context, flag::end_model, config.defense.model_options);
    if (loaded.spec.arch != spec.arch) {
      throw UserError(flag::end_model + " " + config.end_model + " is a " + loaded.spec.arch +
                      ", " + flag::model + " a " + spec.arch +
                      ": a curve needs the same architecture");
    }
    end = loaded.model;
    end_json = {{"source", config.end_model}};
  } else {
    s.finetune.train.label = "endpoint";
    defenses::FinetuneResult run =
        defenses::finetune(s.model.model, spec, s.clean, s.finetune, evaluate, {}, log);
    end = run.model;
    records.insert(records.end(), run.records.begin(), run.records.end());
    models::save_checkpoint(s.context.out / "endpoint.pt", end, spec);
    end_json = {{"source", "finetuned"},
                {"file", "endpoint.pt"},
                {"lr", run.lr},
                {"lr_search", run.lr_search},
                {"best_epoch", best_epoch_json(run)}};
  }

  defenses::McrOptions options;
  options.train = s.finetune.train;
  options.train.label = "curve";
  options.train.lr_option = flag::curve_lr;
  options.train.state_key = "curve";
  options.train.epochs = config.curve_epochs;
  options.train.lr = config.curve_lr;
  options.train.after_step = nullptr;
  defenses::CurveEnds curve;
  std::vector<train::EpochRecord> curve_records =
      defenses::train_curve(s.model.model, end, spec, s.clean, options, curve);
  records.insert(records.end(), curve_records.begin(), curve_records.end());

  const torch::Tensor bn_images = s.clean.train.images;
  nlohmann::json points = nlohmann::json::array();
  std::ostringstream csv;
  csv << "t,clean_acc,asr,robust_acc\n";
  for (int i = 0; i < config.points; ++i) {
    const double t = static_cast<double>(i) / (config.points - 1);
    const train::Metrics metrics = evaluator(
        defenses::curve_model(s.model.model, end, spec, curve, t, bn_images, s.context.device));
    char line[120];
    std::snprintf(line, sizeof line, "t = %.2f: ", t);
    s.context.log(line + metrics.summary());
    nlohmann::json row = metrics.to_json();
    row["t"] = t;
    points.push_back(row);
    csv << t << ',' << metrics.clean_acc << ',' << percent_or_dash(metrics.asr) << ','
        << percent_or_dash(metrics.robust_acc) << '\n';
  }
  write_text_atomic(s.context.out / "mcr_curve.csv", csv.str());

  models::Classifier chosen =
      defenses::curve_model(s.model.model, end, spec, curve, config.t, bn_images, s.context.device);
  const train::Metrics after = evaluator(chosen);
  models::save_checkpoint(s.context.out / "model.pt", chosen, spec);
  nlohmann::json summary = {{"before", s.before.to_json()},
                            {"after", after.to_json()},
                            {"t", config.t},
                            {"end", end_json},
                            {"curve", points},
                            {"seconds", s.context.seconds()},
                            {"clean_subset", s.clean_json}};
  std::ostringstream report;
  report << "# nad mcr (Mode Connectivity Repair)\n\nA quadratic Bezier curve from `"
         << config.defense.model << "` to "
         << (config.end_model.empty() ? std::string("its finetuned copy")
                                      : "`" + config.end_model + "`")
         << ", trained on " << s.clean.indices.size(0) << " clean images for "
         << config.curve_epochs << " epochs (lr " << config.curve_lr << "), in "
         << static_cast<int>(s.context.seconds()) << " s; the model at t = " << config.t
         << " is model.pt. The curve is in mcr_curve.csv.\n\n"
         << train::metrics_table(
                {{"before (t = 0)", s.before},
                 {"after (t = " + std::to_string(config.t).substr(0, 4) + ")", after}});
  finish_defense_run(config.defense, s, chosen, config_json, summary, records, report);
  s.context.log("after: " + after.summary());
  return summary;
}

}  // namespace nad::pipeline
