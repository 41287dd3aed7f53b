#include "nad/pipeline/anp_run.h"

#include <iomanip>
#include <sstream>

#include "nad/pipeline/defense_setup.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::pipeline {

nlohmann::json run_anp(const AnpConfig& config) {
  defenses::AnpOptions options = config.anp;
  options.prune_by = defenses::parse_anp_prune_by(config.prune_by);
  options.batch_size = config.defense.batch_size;
  defenses::check_anp_options(options);
  DefenseSetup s = prepare_defense(config.defense);
  options.augment = s.finetune.train.augment;
  options.seed = config.defense.common.seed;
  options.device = s.context.device;
  options.quiet = config.defense.common.quiet;
  options.state = s.context.state;

  // The finetuning fields of the shared defense configuration do not apply to ANP.
  nlohmann::json config_json = defense_config_json(config.defense, s);
  for (const char* key : {"lr", "lr_grid", "lr_tolerance", "lr_noise_margin", "lr_rule",
                          "select_by", "select_rule", "validation_fraction", "patience", "train"}) {
    config_json.erase(key);
  }
  config_json["command"] = "anp";
  config_json["anp"] = {{"eps", options.eps},
                        {"steps", options.steps},
                        {"alpha", options.alpha},
                        {"iterations", options.iterations},
                        {"rounds", options.rounds},
                        {"batch_size", options.batch_size},
                        {"mask_lr", options.mask_lr},
                        {"momentum", options.momentum},
                        {"prune_by", defenses::anp_prune_by_name(options.prune_by)},
                        {"threshold", options.threshold},
                        {"fraction", options.fraction},
                        {"augment", s.finetune.train.to_json().value("augment", nlohmann::json())},
                        {"seed", options.seed}};
  write_or_check_config(s.context, config_json);

  const auto& evaluator = *s.context.evaluator;
  const defenses::AnpMaskResult masks =
      defenses::learn_anp_masks(s.model.model, s.model.spec, s.clean.train, options,
                                [&](const models::Classifier& m) { return evaluator(m); });
  const defenses::AnpPruned pruned =
      defenses::anp_prune(s.model.model, s.model.spec, masks.layers, masks.masks, options);
  const train::Metrics after = evaluator(pruned.model);
  models::save_checkpoint(s.context.out / "model.pt", pruned.model, s.model.spec);

  // Every neuron's mask, as the authors' mask_values.txt: layer, channel, value.
  std::ostringstream values;
  values << "layer\tchannel\tmask\n";
  int64_t neurons = 0;
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < masks.layers.size(); ++i) {
    const torch::Tensor& m = masks.masks[i];
    for (int64_t c = 0; c < m.numel(); ++c) {
      values << masks.layers[i] << '\t' << c << '\t' << std::setprecision(6) << m[c].item<double>()
             << '\n';
    }
    neurons += m.numel();
    layers.push_back({{"batch_norm", masks.layers[i]},
                      {"neurons", m.numel()},
                      {"min_mask", m.min().item<double>()},
                      {"mean_mask", m.mean().item<double>()},
                      {"pruned", pruned.pruned[i]}});
  }
  write_text_atomic(s.context.out / "mask_values.tsv", values.str());
  s.context.log("ANP: pruned " + std::to_string(pruned.count) + " of " + std::to_string(neurons) +
                " BatchNorm neurons (mask <= " + std::to_string(pruned.threshold).substr(0, 6) +
                ")");

  nlohmann::json summary = {{"before", s.before.to_json()},
                            {"after", after.to_json()},
                            {"pruned_count", pruned.count},
                            {"neurons", neurons},
                            {"threshold", pruned.threshold},
                            {"prune_by", defenses::anp_prune_by_name(options.prune_by)},
                            {"layers", layers},
                            {"clean_subset", s.clean_json},
                            {"mask_values", "mask_values.tsv"}};
  std::ostringstream report;
  report << "# nad anp (Adversarial Neuron Pruning)\n\nLearnt a mask on each of the " << neurons
         << " BatchNorm neurons of `" << config.defense.model << "` on " << s.clean.indices.size(0)
         << " clean images (" << options.iterations << " iterations of batch " << options.batch_size
         << ", perturbation eps " << options.eps << ", alpha " << options.alpha
         << "), then set the BatchNorm weight of the " << pruned.count
         << " neurons whose mask is at most " << pruned.threshold
         << " to zero in the original model.\n\n"
         << train::metrics_table({{"before", s.before}, {"after ANP", after}});
  std::vector<train::EpochRecord> records{before_record(s.before)};
  records.insert(records.end(), masks.records.begin(), masks.records.end());
  finish_defense_run(config.defense, s, pruned.model, config_json, summary, records, report);
  s.context.log("after: " + after.summary());
  return summary;
}

}  // namespace nad::pipeline
