#include <sstream>

#include "nad/pipeline/attention_figure.h"
#include "nad/pipeline/runs.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

namespace {
// "runs/bd/model.pt" reads best as "bd"; any other file by its stem.
std::string default_label(const std::string& file) {
  const std::filesystem::path path(file);
  if (path.filename() == "model.pt" && path.has_parent_path() &&
      !path.parent_path().filename().empty()) {
    return path.parent_path().filename().string();
  }
  return path.stem().string();
}
}  // namespace

nlohmann::json run_attention(const AttentionConfig& config) {
  std::vector<std::string> files{config.model};
  files.insert(files.end(), config.compare.begin(), config.compare.end());
  if (!config.labels.empty() && config.labels.size() != files.size()) {
    throw UserError(flag::labels + " needs " + std::to_string(files.size()) +
                    " names (one per model: " + flag::model + ", then each " + flag::compare +
                    "), got " + std::to_string(config.labels.size()));
  }
  if (!(config.power > 0)) throw UserError(flag::power + " must be positive");
  if (config.rows.empty() && config.images < 1) throw UserError(flag::images + " must be >= 1");
  const defenses::AttentionKind kind = defenses::parse_attention_kind(config.attention);

  RunContext context = open_run(config.common);
  std::vector<LabelledModel> models;
  nlohmann::json measured = nlohmann::json::array();
  std::vector<std::pair<std::string, train::Metrics>> table;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& option = i == 0 ? flag::model : flag::compare;
    models::LoadedModel loaded = load_model_for(files[i], context, option, config.model_options);
    LabelledModel labelled{config.labels.empty() ? default_label(files[i]) : config.labels[i],
                           loaded.model};
    const train::Metrics metrics = (*context.evaluator)(labelled.model);
    context.log(labelled.label + ": " + metrics.summary());
    measured.push_back({{"label", labelled.label},
                        {"model", files[i]},
                        {"arch", loaded.spec.arch},
                        {"metrics", metrics.to_json()}});
    table.emplace_back(labelled.label, metrics);
    models.push_back(std::move(labelled));
  }

  torch::Tensor rows;
  if (config.rows.empty()) {
    rows = figure_rows(context, config.images, config.common.seed);
  } else {
    const int64_t n = context.data.test.size();
    for (int64_t r : config.rows) {
      if (r < 0 || r >= n) {
        throw UserError(flag::rows + ": " + std::to_string(r) + " is not a test row (0.." +
                        std::to_string(n - 1) + ")");
      }
    }
    rows = torch::tensor(config.rows, torch::kLong);
  }
  nlohmann::json predictions =
      write_attention_png(context.out / "attention.png", context, models, rows, config.power, kind);

  nlohmann::json config_json = {
      {"command", "attention"},  {"common", config.common.to_json()},
      {"model", config.model},   {"compare", config.compare},
      {"labels", config.labels}, {"model_options", config.model_options.to_json()},
      {"images", config.images}, {"rows", config.rows},
      {"power", config.power},   {"attention", config.attention}};
  nlohmann::json summary = {{"models", measured},
                            {"predictions", predictions},
                            {"figure", "attention.png"},
                            {"seconds", context.seconds()}};
  std::ostringstream report;
  report << "# nad attention\n\nAttention maps (" << config.attention << ") of " << files.size()
         << " model(s) on " << rows.size(0) << " test images of " << context.data.name
         << ", attack " << config.common.attack.name << ".\n\n![attention](attention.png)\n\n"
         << train::metrics_table(table);
  write_run_files(context, config_json, summary, {}, report.str());
  context.log("wrote " + (context.out / "attention.png").string());
  return summary;
}

}  // namespace nad::pipeline
