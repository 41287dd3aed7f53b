#include "nad/pipeline/inspect_data_run.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include "nad/defenses/data_inspection.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/train/trainer.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

namespace {

// The model's deep features of every image: its deepest attention group's output averaged over
// space (the representation its classifier reads, before the last normalisation and pooling).
torch::Tensor deep_features(const models::Classifier& model, const torch::Tensor& images,
                            torch::Device device, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<torch::Tensor> parts;
  for (int64_t begin = 0; begin < images.size(0); begin += batch_size) {
    const torch::Tensor batch =
        to_memory_format(data::to_input(images.slice(0, begin, begin + batch_size).to(device)));
    AutocastScope autocast(device);
    const models::ModelOutput out = model->forward(batch);
    if (out.features.empty()) throw UserError("the model has no feature groups to inspect");
    const torch::Tensor& deepest = out.features.back();
    parts.push_back((deepest.dim() == 4 ? deepest.mean({2, 3}) : deepest.flatten(1))
                        .to(torch::kCPU, torch::kFloat));
  }
  return torch::cat(parts);
}

// --input-norm's text for a model's normalisation, so that the retrained model gets the same.
std::string input_norm_option(const models::InputNorm& norm) {
  if (norm.identity()) return "none";
  const auto& presets = models::input_norm_presets();
  if (std::find(presets.begin(), presets.end(), norm.name) != presets.end()) return norm.name;
  auto values = [](const std::vector<double>& v) {
    std::string text;
    for (double x : v) {
      char number[32];
      std::snprintf(number, sizeof number, "%.17g", x);
      text += (text.empty() ? "" : ",") + std::string(number);
    }
    return text;
  };
  return values(norm.mean) + "/" + values(norm.std);
}

}  // namespace

nlohmann::json run_inspect_data(const InspectDataConfig& config) {
  if (config.method != "spectral" && config.method != "clustering" && config.method != "both") {
    throw UserError(flag::method + " must be spectral, clustering or both, not '" + config.method +
                    "'");
  }
  if (!(config.expected_poison_rate > 0 && config.expected_poison_rate <= 1)) {
    throw UserError(flag::expected_poison_rate + " must be in (0, 1]");
  }
  if (!(config.size_threshold > 0 && config.size_threshold < 1)) {
    throw UserError(flag::size_threshold + " must be in (0, 1)");
  }
  if (config.components < 1) throw UserError(flag::components + " must be at least 1");
  if (!config.poisoned_indices.empty())
    check_model_file(config.poisoned_indices, flag::poisoned_indices);
  if (config.retrain) {
    train::check_loop_options(config.train.epochs, config.train.batch_size, config.train.lr);
  }
  RunContext context = open_run(config.common);
  if (!context.attack)
    throw UserError("nad inspect-data needs " + flag::attack + ": the training set to inspect");
  models::LoadedModel loaded =
      load_model_for(config.model, context, flag::model, config.model_options);
  const nlohmann::json config_json = {{"command", "inspect-data"},
                                      {"common", config.common.to_json()},
                                      {"model", config.model},
                                      {"model_options", config.model_options.to_json()},
                                      {"method", config.method},
                                      {"expected_poison_rate", config.expected_poison_rate},
                                      {"size_threshold", config.size_threshold},
                                      {"components", config.components},
                                      {"poisoned_indices", config.poisoned_indices},
                                      {"retrain", config.retrain}};
  write_or_check_config(context, config_json);

  const attacks::PoisonedSet poisoned =
      context.attack->poison(context.data.train, config.common.seed);
  const int64_t rows = poisoned.data.size();
  const torch::Tensor known = config.poisoned_indices.empty()
                                  ? poisoned.indices
                                  : defenses::read_indices(config.poisoned_indices, rows);
  context.log("training set: " + std::to_string(rows) + " images, " +
              std::to_string(known.size(0)) + " of them poisoned (" +
              (config.poisoned_indices.empty() ? "by this run's attack" : config.poisoned_indices) +
              ")");
  const torch::Tensor features =
      deep_features(loaded.model, poisoned.data.images, context.device, context.eval_batch_size);
  const torch::Tensor labels = poisoned.data.labels.cpu();
  context.log("features: " + std::to_string(features.size(1)) + " per image");

  std::vector<defenses::InspectionResult> results;
  if (config.method != "clustering") {
    results.push_back(defenses::spectral_signatures(features, labels, config.expected_poison_rate));
  }
  if (config.method != "spectral") {
    results.push_back(defenses::activation_clustering(features, labels, config.common.seed,
                                                      config.components, config.size_threshold));
  }
  nlohmann::json methods = nlohmann::json::object();
  std::ostringstream report;
  report << "# nad inspect-data\n\nThe training set of `" << config.common.attack.name << "` ("
         << rows << " images, " << known.size(0) << " poisoned), inspected with the deep "
         << "features of `" << config.model << "`.\n\n| method | suspects | TPR % | FPR % |\n"
         << "|---|---:|---:|---:|\n";
  for (const auto& r : results) {
    const defenses::DetectionRates rates = defenses::detection_rates(r.suspects, known, rows);
    defenses::write_indices(context.out / ("suspects-" + r.method + ".txt"),
                            torch::tensor(r.suspects, torch::kLong));
    // Per class, how many of its rows are known to be poisoned and how many of those were
    // flagged: where a method finds the poison, and where it only removes clean images.
    torch::Tensor is_poisoned = torch::zeros({rows}, torch::kBool);
    is_poisoned.index_fill_(0, known.to(torch::kLong), true);
    torch::Tensor is_suspect = torch::zeros({rows}, torch::kBool);
    if (!r.suspects.empty()) is_suspect.index_fill_(0, torch::tensor(r.suspects), true);
    nlohmann::json classes = nlohmann::json::array();
    for (const auto& c : r.classes) {
      const torch::Tensor in_class = labels == c.label;
      nlohmann::json entry = {
          {"label", c.label},
          {"size", c.size},
          {"poisoned", (in_class & is_poisoned).sum().item<int64_t>()},
          {"suspects", c.suspects},
          {"poisoned_suspects", (in_class & is_poisoned & is_suspect).sum().item<int64_t>()},
          {r.method == "spectral" ? "top_singular_value" : "smaller_cluster_share", c.statistic}};
      if (r.method == "clustering") {
        // The smaller cluster whether or not it was under the size threshold.
        entry["poisoned_in_smaller_cluster"] =
            (in_class & is_poisoned & (r.scores > 0)).sum().item<int64_t>();
      }
      classes.push_back(entry);
    }
    methods[r.method] = {{"suspects", static_cast<int64_t>(r.suspects.size())},
                         {"suspects_file", "suspects-" + r.method + ".txt"},
                         {"true_positives", rates.true_positives},
                         {"false_positives", rates.false_positives},
                         {"tpr", rates.tpr},
                         {"fpr", rates.fpr},
                         {"classes", classes}};
    report << "| " << r.method << " | " << r.suspects.size() << " | " << rates.tpr << " | "
           << rates.fpr << " |\n";
    context.log(r.method + ": " + std::to_string(r.suspects.size()) + " suspects, TPR " +
                std::to_string(rates.tpr).substr(0, 5) + "%, FPR " +
                std::to_string(rates.fpr).substr(0, 5) + "%");
  }
  nlohmann::json summary = {{"images", rows},
                            {"poisoned", known.size(0)},
                            {"features", features.size(1)},
                            {"methods", methods},
                            {"seconds", context.seconds()}};
  if (config.retrain) {
    std::set<int64_t> union_of_suspects;
    for (const auto& r : results) union_of_suspects.insert(r.suspects.begin(), r.suspects.end());
    if (union_of_suspects.empty()) {
      context.log(flag::retrain + ": no suspects, so nothing to leave out; not retrained");
      summary["retrain"] = {{"skipped", "no suspects"}};
    } else {
      defenses::write_indices(
          context.out / "retrain_excluded.txt",
          torch::tensor(std::vector<int64_t>(union_of_suspects.begin(), union_of_suspects.end()),
                        torch::kLong));
      TrainConfig train = config.train;
      train.common = config.common;
      train.common.out = (context.out / "retrain").string();
      train.arch = loaded.spec.arch;
      train.input_norm = input_norm_option(loaded.spec.input_norm);
      train.exclude_indices = (context.out / "retrain_excluded.txt").string();
      context.log(flag::retrain + ": training " + train.arch + " without the " +
                  std::to_string(union_of_suspects.size()) + " suspects into " + train.common.out);
      const nlohmann::json trained = run_train(train);
      summary["retrain"] = {
          {"folder", "retrain"}, {"excluded", union_of_suspects.size()}, {"after", trained}};
      report << "\nRetrained without the " << union_of_suspects.size() << " suspects ("
             << trained["excluded"]["poisoned_kept"].get<int64_t>()
             << " poisoned images remained): ACC " << trained["clean_acc"].get<double>()
             << "%, ASR " << (trained["asr"].is_number() ? trained["asr"].get<double>() : 0.0)
             << "% (`retrain/`).\n";
    }
    summary["seconds"] = context.seconds();
  }
  write_run_files(context, config_json, summary, {}, report.str());
  return summary;
}

}  // namespace nad::pipeline
