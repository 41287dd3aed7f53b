#include "nad/pipeline/ibau_run.h"

#include <cstdlib>
#include <sstream>

#include "nad/pipeline/defense_setup.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json run_ibau(const IbauConfig& config) {
  defenses::IbauOptions options = config.ibau;
  options.batch_size = config.defense.batch_size;
  if (config.defense.lr == "auto") {
    throw UserError("nad ibau trains at one rate, as its authors do (Adam, 0.001): give " +
                    flag::lr + " R");
  }
  // A number, checked as every defense's --lr is (prepare_defense), then as I-BAU's.
  options.lr = std::strtod(config.defense.lr.c_str(), nullptr);
  defenses::check_ibau_options(options);
  DefenseSetup s = prepare_defense(config.defense);
  options.seed = config.defense.common.seed;
  options.device = s.context.device;
  options.quiet = config.defense.common.quiet;
  options.state = s.context.state;

  nlohmann::json config_json = defense_config_json(config.defense, s);
  for (const char* key : {"lr_grid", "lr_tolerance", "lr_noise_margin", "lr_rule", "select_by",
                          "select_rule", "validation_fraction", "patience", "train"}) {
    config_json.erase(key);
  }
  config_json["command"] = "ibau";
  config_json["ibau"] = {{"rounds", options.rounds},
                         {"k", options.fixed_point_steps},
                         {"batch_size", options.batch_size},
                         {"optimizer", "adam"},
                         {"lr", options.lr},
                         {"inner_lr", options.inner_lr},
                         {"perturbation_lr", options.perturbation_lr},
                         {"perturbation_decay", options.perturbation_decay},
                         {"perturbation_radius", options.perturbation_radius},
                         {"portion", options.portion},
                         {"precision", "fp32 (the hypergradient needs second derivatives)"},
                         {"seed", options.seed}};
  write_or_check_config(s.context, config_json);

  const auto& evaluator = *s.context.evaluator;
  const defenses::IbauResult result =
      defenses::ibau_unlearn(s.model.model, s.model.spec, s.clean.train, options,
                             [&](const models::Classifier& m) { return evaluator(m); });
  const train::Metrics after = evaluator(result.model);
  models::save_checkpoint(s.context.out / "model.pt", result.model, s.model.spec);

  nlohmann::json summary = {{"before", s.before.to_json()},
                            {"after", after.to_json()},
                            {"lr", options.lr},
                            {"perturbation_norms", result.perturbation_norms},
                            {"clean_subset", s.clean_json}};
  std::ostringstream report;
  report << "# nad ibau (Implicit Backdoor Adversarial Unlearning)\n\nUnlearnt `"
         << config.defense.model << "` on " << s.clean.indices.size(0)
         << " clean images: " << options.rounds
         << " rounds of a universal perturbation (L2 norm at most " << options.perturbation_radius
         << ") and Adam at " << options.lr << " through the implicit "
         << "hypergradient (K = " << options.fixed_point_steps << "), batches of "
         << options.batch_size << ", in " << static_cast<int>(s.context.seconds()) << " s.\n\n"
         << train::metrics_table({{"before", s.before}, {"after I-BAU", after}});
  std::vector<train::EpochRecord> records{before_record(s.before)};
  records.insert(records.end(), result.records.begin(), result.records.end());
  finish_defense_run(config.defense, s, result.model, config_json, summary, records, report);
  s.context.log("after: " + after.summary());
  return summary;
}

}  // namespace nad::pipeline
