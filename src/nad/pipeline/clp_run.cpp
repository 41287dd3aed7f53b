#include "nad/pipeline/clp_run.h"

#include <sstream>

#include "nad/defenses/clp.h"
#include "nad/models/checkpoint.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/defense_setup.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json run_clp(const ClpConfig& config) {
  if (!(config.u >= 0)) throw UserError(flag::u + " must be >= 0, not " + std::to_string(config.u));
  RunContext context = open_run(config.common);
  models::LoadedModel loaded =
      load_model_for(config.model, context, flag::model, config.model_options);
  const nlohmann::json config_json = {{"command", "clp"},
                                      {"common", config.common.to_json()},
                                      {"model", config.model},
                                      {"model_options", config.model_options.to_json()},
                                      {"u", config.u}};
  write_or_check_config(context, config_json);
  const train::Metrics before = (*context.evaluator)(loaded.model);
  context.log("before: " + before.summary());

  defenses::ClpOptions options;
  options.u = config.u;
  const defenses::ClpResult result = defenses::clp_prune(loaded.model, loaded.spec, options);
  const train::Metrics after = (*context.evaluator)(result.model);
  models::save_checkpoint(context.out / "model.pt", result.model, loaded.spec);

  nlohmann::json layers = nlohmann::json::array();
  std::ostringstream table;
  table << "| BatchNorm | after convolution | channels | threshold | pruned "
           "|\n|---|---|---:|---:|---|\n";
  for (const auto& layer : result.layers) {
    layers.push_back({{"batch_norm", layer.batch_norm},
                      {"conv", layer.conv},
                      {"channels", layer.bounds.size(0)},
                      {"threshold", layer.threshold},
                      {"max_bound", layer.bounds.max().item<double>()},
                      {"pruned", layer.pruned}});
    table << "| `" << layer.batch_norm << "` | `" << layer.conv << "` | " << layer.bounds.size(0)
          << " | " << layer.threshold << " | ";
    for (size_t i = 0; i < layer.pruned.size(); ++i) table << (i ? ", " : "") << layer.pruned[i];
    table << " |\n";
  }
  context.log("CLP (u " + std::to_string(config.u).substr(0, 4) + "): pruned " +
              std::to_string(result.pruned) + " of " + std::to_string(result.channels) +
              " channels in " + std::to_string(result.layers.size()) + " BatchNorm layers");
  if (!result.skipped.empty()) {
    std::string names;
    for (const auto& name : result.skipped) names += (names.empty() ? "" : ", ") + name;
    context.log("not paired with a convolution of matching width, left alone: " + names);
  }
  nlohmann::json summary = {{"before", before.to_json()},
                            {"after", after.to_json()},
                            {"u", config.u},
                            {"pruned_count", result.pruned},
                            {"channels", result.channels},
                            {"layers", layers},
                            {"skipped", result.skipped},
                            {"clean_data", "none (data-free)"},
                            {"seconds", context.seconds()}};
  std::ostringstream report;
  report << "# nad clp (Channel Lipschitzness-based Pruning)\n\nPruned " << result.pruned << " of "
         << result.channels << " channels of `" << config.model << "` (" << loaded.spec.arch
         << ") whose upper bound on the channel Lipschitz constant exceeds mean + " << config.u
         << " std of its layer's, by zeroing their BatchNorm weight and bias. No clean data was "
            "used; the dataset only measures the model.\n\n"
         << train::metrics_table({{"before", before}, {"after CLP", after}}) << "\n"
         << table.str();
  write_run_files(context, config_json, summary, {before_record(before)}, report.str());
  context.log("after: " + after.summary());
  return summary;
}

}  // namespace nad::pipeline
