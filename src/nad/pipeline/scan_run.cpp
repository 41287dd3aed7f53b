#include <algorithm>
#include <cstdio>
#include <sstream>

#include "nad/data/subset.h"
#include "nad/defenses/clean_subset.h"
#include "nad/io/figure.h"
#include "nad/io/json.h"
#include "nad/io/png.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/defense_setup.h"
#include "nad/pipeline/runs.h"
#include "nad/pipeline/scan.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/format.h"

namespace nad::pipeline {

namespace fs = std::filesystem;

namespace {

torch::Tensor to_uint8(const torch::Tensor& values) {
  return values.detach().cpu().round().clamp(0, 255).to(torch::kUInt8).contiguous();
}
torch::Tensor mask_image(const torch::Tensor& mask) { return to_uint8(mask * 255).unsqueeze(2); }
torch::Tensor trigger_image(const defenses::ReversedTrigger& t) {
  return to_uint8(t.mask.unsqueeze(2) * t.pattern);
}

void write_trigger_files(const fs::path& dir, const defenses::ReversedTrigger& t) {
  const std::string k = std::to_string(t.target);
  io::write_png(dir / ("trigger-" + k + ".png"), to_uint8(t.pattern));
  io::write_png(dir / ("mask-" + k + ".png"), mask_image(t.mask));
}

std::string fixed(double value, int digits) {
  return format_double(value, ("%." + std::to_string(digits) + "f").c_str());
}

void write_scan_figures(const fs::path& dir, const ScanResult& r,
                        const std::vector<std::string>& class_names, double threshold) {
  io::ImageGrid grid;
  grid.title = "Neural Cleanse: reversed trigger per class";
  grid.row_labels = {"mask", "pattern", "mask x pattern"};
  grid.cells.resize(3);
  std::vector<bool> marked(r.triggers.size(), false);
  for (int64_t k : r.anomaly.flagged) marked[static_cast<size_t>(k)] = true;
  for (const auto& t : r.triggers) {
    grid.column_labels.push_back(std::to_string(t.target) + (marked[t.target] ? " (flagged)" : ""));
    grid.cells[0].push_back(mask_image(t.mask));
    grid.cells[1].push_back(to_uint8(t.pattern));
    grid.cells[2].push_back(trigger_image(t));
  }
  grid.marked = marked;
  grid.note = "flagged: anomaly index above " + fixed(threshold, 1) +
              " (mask norm far below the median); classes: " + std::to_string(class_names.size());
  io::write_image_grid(dir / "triggers.png", grid);

  io::BarChart chart;
  chart.title = "Neural Cleanse: L1 norm of each class's smallest trigger";
  chart.x_label = "class";
  chart.y_label = "mask L1 norm (pixels)";
  for (size_t k = 0; k < r.norms.size(); ++k) {
    chart.labels.push_back(std::to_string(k));
    chart.values.push_back(r.norms[k]);
  }
  chart.marked = marked;
  // The norm whose anomaly index equals the threshold: bars below it are flagged.
  const double line = r.anomaly.flag_below(threshold);
  if (line > 0) {
    chart.line = line;
    chart.line_label = "flag below (index " + fixed(threshold, 1) + ")";
  }
  io::write_bar_chart(dir / "norms.png", chart);
}

}  // namespace

nlohmann::json ScanOptions::to_json() const {
  nlohmann::json j = nc.to_json();
  j["threshold"] = threshold;
  j["holdout_fraction"] = holdout_fraction;
  j["anomaly_scale"] = defenses::anomaly_scale_name(anomaly_scale);
  return j;
}

void check_scan_options(const ScanOptions& options) {
  const std::string& p = options.option_prefix;
  if (!(options.holdout_fraction > 0 && options.holdout_fraction < 1)) {
    throw UserError(p + "holdout-fraction must be in (0, 1)");
  }
  if (!(options.threshold > 0)) throw UserError(p + "threshold must be > 0");
  const defenses::NeuralCleanseOptions& nc = options.nc;
  if (!(nc.lr > 0) || !(nc.init_cost > 0) || !(nc.cost_multiplier > 1)) {
    throw UserError(p + "lr and " + p + "init-cost must be > 0 and " + p + "cost-multiplier > 1");
  }
  if (!(nc.success_threshold > 0 && nc.success_threshold <= 1)) {
    throw UserError(p + "success-threshold must be in (0, 1]");
  }
}

ScanResult scan_model(const models::Classifier& model, const std::vector<std::string>& class_names,
                      const data::Dataset& optimise, const data::Dataset& holdout,
                      const ScanOptions& options, const fs::path& dir,
                      const attacks::Attack* attack, std::shared_ptr<const train::StateStore> state,
                      const std::string& key, bool quiet) {
  const int64_t K = static_cast<int64_t>(class_names.size());
  if (K < 3) {
    throw UserError("Neural Cleanse's outlier test needs at least 3 classes; the data has " +
                    std::to_string(K));
  }
  ensure_directory(dir);
  defenses::NeuralCleanseOptions nc = options.nc;
  nc.state = std::move(state);
  nc.state_key = key;
  nc.quiet = quiet;
  ScanResult r;
  r.triggers = defenses::reverse_triggers(
      model, K, optimise, holdout, nc,
      [&](const defenses::ReversedTrigger& t) { write_trigger_files(dir, t); });
  const double whole = static_cast<double>(optimise.height() * optimise.width());
  for (const auto& t : r.triggers) r.norms.push_back(t.reached ? t.norm : whole);
  // Both scales are reported; the chosen one gives the verdict.
  r.linear = defenses::anomaly_index(r.norms, options.threshold, defenses::AnomalyScale::kLinear);
  r.logarithmic = defenses::anomaly_index(r.norms, options.threshold, defenses::AnomalyScale::kLog);
  r.anomaly = options.anomaly_scale == defenses::AnomalyScale::kLog ? r.logarithmic : r.linear;
  for (int64_t k = 1; k < K; ++k) {
    if (r.anomaly.index[k] > r.anomaly.index[r.most_anomalous]) r.most_anomalous = k;
  }

  nlohmann::json classes = nlohmann::json::array();
  std::vector<bool> flagged(static_cast<size_t>(K), false);
  for (int64_t k : r.anomaly.flagged) flagged[k] = true;
  for (const auto& t : r.triggers) {
    nlohmann::json c = t.to_json();
    c["name"] = class_names[t.target];
    c["anomaly_index"] = r.anomaly.index[t.target];
    c["anomaly_index_linear"] = r.linear.index[t.target];
    c["anomaly_index_log"] = r.logarithmic.index[t.target];
    c["flagged"] = static_cast<bool>(flagged[t.target]);
    classes.push_back(c);
  }
  r.json = {{"method", "neural-cleanse"},
            {"classes", classes},
            {"anomaly_scale", defenses::anomaly_scale_name(r.anomaly.scale)},
            {"median_norm", r.linear.median},
            {"mad", r.linear.mad},
            {"median_log_norm", r.logarithmic.median},
            {"mad_log", r.logarithmic.mad},
            {"flagged_linear", r.linear.flagged},
            {"flagged_log", r.logarithmic.flagged},
            {"threshold", options.threshold},
            {"flagged", r.anomaly.flagged},
            {"verdict", r.anomaly.flagged.empty() ? "not flagged" : "backdoored"},
            {"most_anomalous", r.most_anomalous},
            {"max_anomaly_index", r.anomaly.index[r.most_anomalous]},
            {"optimise_images", optimise.size()},
            {"holdout_images", holdout.size()},
            {"options", options.to_json()},
            {"attack", nullptr}};
  if (attack) {
    const auto& a = attack->options();
    nlohmann::json known = {{"name", a.name},
                            {"label_mode", attacks::label_mode_name(a.label_mode)}};
    if (a.label_mode == attacks::LabelMode::kAllToOne) {
      known["target"] = a.target;
      known["target_flagged"] = a.target < K && flagged[a.target];
      known["only_target_flagged"] =
          r.anomaly.flagged.size() == 1 && r.anomaly.flagged[0] == a.target;
    }
    r.json["attack"] = known;
  }
  // Again for every class: after a resume, the classes finished before it were not written.
  for (const auto& t : r.triggers) write_trigger_files(dir, t);
  io::write_json(dir / "scan.json", r.json);
  if (io::figures_available()) write_scan_figures(dir, r, class_names, options.threshold);
  return r;
}

std::string scan_report(const ScanResult& r, const std::vector<std::string>& class_names) {
  std::ostringstream out;
  out << "| class | name | mask L1 norm | anomaly index | on log norms | reversed trigger's "
         "success | flagged |\n"
      << "|---:|---|---:|---:|---:|---:|---|\n";
  for (const auto& t : r.triggers) {
    const bool flagged = std::find(r.anomaly.flagged.begin(), r.anomaly.flagged.end(), t.target) !=
                         r.anomaly.flagged.end();
    out << "| " << t.target << " | " << class_names[t.target] << " | "
        << (t.reached ? fixed(t.norm, 1) : "not reached (" + fixed(t.norm, 1) + ")") << " | "
        << fixed(r.linear.index[t.target], 2) << " | " << fixed(r.logarithmic.index[t.target], 2)
        << " | " << fixed(t.success, 2) << "% | " << (flagged ? "**yes**" : "") << " |\n";
  }
  const bool log_scale = r.anomaly.scale == defenses::AnomalyScale::kLog;
  out << "\nMedian norm " << fixed(r.linear.median, 1) << ", MAD " << fixed(r.linear.mad, 2)
      << " (of the logarithms: median " << fixed(r.logarithmic.median, 3) << ", MAD "
      << fixed(r.logarithmic.mad, 3) << "); a class is flagged when (median - "
      << (log_scale ? "log norm" : "norm") << ") / (1.4826 MAD)"
      << (log_scale ? " on the logarithms" : "") << " exceeds "
      << fixed(r.json["threshold"].get<double>(), 1) << " (--anomaly-scale "
      << defenses::anomaly_scale_name(r.anomaly.scale) << "; the other scale flags "
      << nlohmann::json(log_scale ? r.linear.flagged : r.logarithmic.flagged).dump()
      << "). A class whose mask never reached the success threshold counts as the whole "
         "image.\n\n";
  if (r.anomaly.flagged.empty()) {
    out << "**Verdict: not flagged** (largest anomaly index "
        << fixed(r.anomaly.index[r.most_anomalous], 2) << ", class " << r.most_anomalous << ").\n";
  } else {
    out << "**Verdict: backdoored**, flagged class(es):";
    for (int64_t k : r.anomaly.flagged) out << " " << k << " (" << class_names[k] << ")";
    out << ".\n";
  }
  const nlohmann::json& attack = r.json["attack"];
  if (attack.is_object() && attack.contains("target")) {
    out << "\nKnown attack (used only for this line): " << attack["name"].get<std::string>()
        << " to class " << attack["target"].get<int64_t>() << ", "
        << (attack["target_flagged"].get<bool>() ? "flagged" : "not flagged") << ".\n";
  }
  return out.str();
}

namespace {
// The scan options as given, with what the run decides: the seed, the device and the evaluation
// batch size.
ScanOptions run_scan_options(const ScanOptions& given, uint64_t seed, const RunContext& context) {
  ScanOptions options = given;
  options.nc.seed = seed;
  options.nc.device = context.device;
  options.nc.eval_batch_size = context.eval_batch_size;
  return options;
}

ScanOptions defense_scan_options(const DefenseConfig& config, const RunContext& context) {
  return run_scan_options(config.verify_scan, config.common.seed, context);
}
}  // namespace

void prepare_scan_selection(const DefenseConfig& config, DefenseSetup& s) {
  const RunContext& context = s.context;
  if (context.data.num_classes() < 3) {
    throw UserError(flag::select_by +
                    " scan: Neural Cleanse's outlier test needs at least 3 classes; " +
                    context.data.name + " has " + std::to_string(context.data.num_classes()));
  }
  context.log(flag::select_by + " scan: Neural Cleanse on the model before the defense ...");
  auto before = std::make_shared<ScanResult>(
      scan_model(s.model.model, context.data.class_names, s.clean.train, s.clean.validation,
                 defense_scan_options(config, context), context.out / "scan-before",
                 context.attack.get(), context.state, "scan-before", config.common.quiet));
  s.before_scan = before;
  const defenses::ReversedTrigger suspect = before->triggers[before->most_anomalous];
  const data::Dataset holdout = s.clean.validation.to(context.device);
  const int64_t others = holdout.labels.ne(suspect.target).sum().item<int64_t>();
  const int64_t batch = context.eval_batch_size;
  context.log(flag::select_by + " scan: candidates are judged by the reversed trigger of class " +
              std::to_string(suspect.target) + " (" +
              (before->anomaly.flagged.empty() ? "the most anomalous, not flagged" : "flagged") +
              "), " + fixed(suspect.success, 2) + "% on the model before");
  s.finetune.lr_search.probe = [suspect, holdout, others, batch](const models::Classifier& model) {
    return defenses::BackdoorSignal{
        defenses::reversed_trigger_success(model, suspect, holdout, batch), others};
  };
}

nlohmann::json verify_cleaning(const DefenseConfig& config, const DefenseSetup& s,
                               const models::Classifier& after, std::ostream& report) {
  if (!config.verify) return nullptr;
  const RunContext& context = s.context;
  const ScanOptions options = defense_scan_options(config, context);
  const auto& names = context.data.class_names;
  defenses::CleanData split;
  ScanResult before;
  if (s.before_scan) {
    // --select-by scan scanned the model already, on the defense's own split.
    split = s.clean;
    before = *s.before_scan;
  } else {
    // The defense's whole clean subset, split again into images to optimise on and to check.
    const auto [optimise_rows, holdout_rows] =
        data::split_holdout(s.clean.indices, context.data.train.labels,
                            config.verify_scan.holdout_fraction, config.common.seed + 3);
    split.train = context.data.train.select(optimise_rows);
    split.validation = context.data.train.select(holdout_rows);
    context.log("verify: Neural Cleanse on the model before the defense ...");
    before = scan_model(s.model.model, names, split.train, split.validation, options,
                        context.out / "scan-before", context.attack.get(), context.state,
                        "scan-before", config.common.quiet);
  }
  context.log("verify: Neural Cleanse on the model after it ...");
  const ScanResult cleaned =
      scan_model(after, names, split.train, split.validation, options, context.out / "scan-after",
                 context.attack.get(), context.state, "scan-after", config.common.quiet);
  // The trigger a defender found before, tried on the cleaned model: the stand-in for ASR that
  // needs no attack knowledge.
  const defenses::ReversedTrigger& suspect = before.triggers[before.most_anomalous];
  const double success_after = defenses::reversed_trigger_success(
      after, suspect, split.validation.to(context.device), context.eval_batch_size);
  auto side = [](const ScanResult& r) {
    return nlohmann::json{{"verdict", r.json["verdict"]},
                          {"flagged", r.json["flagged"]},
                          {"most_anomalous", r.most_anomalous},
                          {"max_anomaly_index", r.anomaly.index[r.most_anomalous]}};
  };
  nlohmann::json verify = {{"before", side(before)},
                           {"after", side(cleaned)},
                           {"reversed_trigger",
                            {{"class", suspect.target},
                             {"flagged_before", !before.anomaly.flagged.empty()},
                             {"success_before", suspect.success},
                             {"success_after", success_after}}},
                           {"holdout_images", split.validation.size()},
                           {"folders", {"scan-before", "scan-after"}}};
  report << "\n## Verification without attack knowledge (Neural Cleanse)\n\n"
         << "| | verdict | flagged | largest anomaly index (class) |\n|---|---|---|---|\n";
  for (const auto& [label, r] :
       {std::pair<const char*, const ScanResult*>{"before", &before}, {"after", &cleaned}}) {
    report << "| " << label << " | " << r->json["verdict"].get<std::string>() << " | "
           << r->json["flagged"].dump() << " | " << fixed(r->anomaly.index[r->most_anomalous], 2)
           << " (" << r->most_anomalous << ") |\n";
  }
  report << "\nThe reversed trigger of class " << suspect.target
         << (before.anomaly.flagged.empty() ? " (the most anomalous, not flagged)" : " (flagged)")
         << " sends " << fixed(suspect.success, 2) << "% of held-out clean images there before, "
         << fixed(success_after, 2) << "% after. Details: `scan-before/`, `scan-after/`.\n";
  context.log("verify: before " + before.json["verdict"].get<std::string>() + ", after " +
              cleaned.json["verdict"].get<std::string>() + "; reversed trigger of class " +
              std::to_string(suspect.target) + ": " + fixed(suspect.success, 2) + "% -> " +
              fixed(success_after, 2) + "%");
  return verify;
}

nlohmann::json run_scan(const ScanConfig& config) {
  check_common_options(config.common);
  check_model_file(config.model, flag::model);
  check_scan_options(config.scan);
  check_clean_ratio(config.common, config.clean_ratio, config.clean_indices);
  RunContext context = open_run(config.common, /*prepares_attack=*/false, /*resumable=*/true);
  if (context.data.num_classes() < 3) {
    throw UserError("Neural Cleanse's outlier test needs at least 3 classes; " + context.data.name +
                    " has " + std::to_string(context.data.num_classes()));
  }
  models::LoadedModel loaded =
      load_model_for(config.model, context, flag::model, config.model_options);
  const double holdout = config.scan.holdout_fraction;
  const defenses::CleanData clean = draw_clean_data(
      context, config.clean_ratio, config.clean_indices, config.common.seed, holdout);
  defenses::write_indices(context.out / "clean_indices.txt", clean.indices);
  context.log("clean subset: " + std::to_string(clean.indices.size(0)) + " images (" +
              std::to_string(clean.train.size()) + " to reverse triggers on, " +
              std::to_string(clean.validation.size()) + " held out to check them)");

  nlohmann::json config_json = {{"command", "scan"},
                                {"common", config.common.to_json()},
                                {"model", config.model},
                                {"model_options", config.model_options.to_json()},
                                {"clean_ratio", config.clean_ratio},
                                {"clean_indices", config.clean_indices},
                                {"scan", config.scan.to_json()},
                                {"fail_if_flagged", config.fail_if_flagged}};
  write_or_check_config(context, config_json);

  const ScanOptions options = run_scan_options(config.scan, config.common.seed, context);
  const ScanResult result =
      scan_model(loaded.model, context.data.class_names, clean.train, clean.validation, options,
                 context.out, context.attack.get(), context.state, "scan", config.common.quiet);
  const train::Metrics metrics = (*context.evaluator)(loaded.model);

  nlohmann::json summary = result.json;
  summary["model"] = config.model;
  summary["arch"] = loaded.spec.arch;
  summary["test"] = metrics.to_json();
  summary["clean_subset"] = {
      {"size", clean.indices.size(0)},
      {"optimise", clean.train.size()},
      {"holdout", clean.validation.size()},
      {"indices_file", "clean_indices.txt"},
      {"source", clean_source(context, config.common, config.clean_indices)}};
  summary["test_source"] = context.test_source;
  summary["seconds"] = context.seconds();
  std::ostringstream report;
  report << "# nad scan\n\n`" << config.model << "` (" << loaded.spec.arch << ") on "
         << context.data.name << ": Neural Cleanse on " << clean.train.size()
         << " clean images, each reversed trigger checked on " << clean.validation.size()
         << " held-out ones, in " << static_cast<int>(context.seconds()) << " s.\n\n"
         << scan_report(result, context.data.class_names) << "\nModel on the "
         << context.test_source << ": " << metrics.summary()
         << ".\n\nFigures: `triggers.png`, `norms.png`; each trigger as `trigger-<k>.png` and "
            "`mask-<k>.png`.\n";
  write_run_files(context, config_json, summary, {}, report.str());
  if (result.anomaly.flagged.empty()) {
    context.log("scan: not flagged (largest anomaly index " +
                fixed(result.anomaly.index[result.most_anomalous], 2) + ", class " +
                std::to_string(result.most_anomalous) + ")");
  } else {
    std::string classes;
    for (int64_t k : result.anomaly.flagged) {
      classes += " " + std::to_string(k) + " (index " + fixed(result.anomaly.index[k], 2) + ")";
    }
    context.log("scan: BACKDOORED, flagged class" + classes);
  }
  return summary;
}

}  // namespace nad::pipeline
