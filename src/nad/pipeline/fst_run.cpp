#include "nad/pipeline/fst_run.h"

#include <sstream>

#include "nad/defenses/fst.h"
#include "nad/pipeline/defense_setup.h"
#include "nad/train/report.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json run_fst(const FstConfig& config) {
  if (config.defense.lr == "auto") {
    throw UserError("nad fst trains at one rate, as its authors do (default 0.01): give " +
                    flag::lr + " R");
  }
  if (!(config.alpha >= 0)) {
    throw UserError(flag::fst_alpha + " must be >= 0, not " + std::to_string(config.alpha));
  }
  DefenseSetup s = prepare_defense(config.defense);
  models::Classifier model = models::clone_model(s.model.model, s.model.spec);
  const std::string layer = defenses::classifier_layer(model, s.model.spec.num_classes);
  nlohmann::json config_json = defense_config_json(config.defense, s);
  config_json["command"] = "fst";
  config_json["alpha"] = config.alpha;
  config_json["classifier"] = layer;
  write_or_check_config(s.context, config_json);

  const defenses::FstHead head =
      defenses::reset_classifier(model, layer, config.defense.common.seed);
  train::TrainOptions options = s.finetune.train;
  options.label = "fst";
  if (options.state) options.state_key = "fst";
  options.after_step = [head](const models::Classifier&) {
    defenses::rescale_to_original_norm(head);
  };
  const double alpha = config.alpha;
  const auto& evaluator = *s.context.evaluator;
  std::vector<train::EpochRecord> run = train::train_model(
      model, s.clean.train, options, [&](const models::Classifier& m) { return evaluator(m); },
      [head, alpha](const torch::Tensor&, const models::ModelOutput&) {
        return defenses::fst_penalty(head, alpha);
      });
  const train::Metrics after = evaluator(model);
  models::save_checkpoint(s.context.out / "model.pt", model, s.model.spec);

  std::vector<train::EpochRecord> records{before_record(s.before)};
  records.insert(records.end(), run.begin(), run.end());
  nlohmann::json summary = {
      {"before", s.before.to_json()}, {"after", after.to_json()}, {"seconds", s.context.seconds()},
      {"clean_subset", s.clean_json}, {"lr", options.lr},         {"alpha", alpha},
      {"classifier", layer}};
  std::ostringstream report;
  report << "# nad fst (Feature Shift Tuning)\n\nRe-initialised `" << layer << "` of `"
         << config.defense.model << "`, then trained every parameter on " << s.clean.indices.size(0)
         << " clean images for " << config.defense.epochs << " epochs, lr " << options.lr
         << ", with alpha " << alpha
         << " x <W, W_original> added to the loss and W kept at the original norm, in "
         << static_cast<int>(s.context.seconds()) << " s.\n\n"
         << train::metrics_table({{"before", s.before}, {"after FST", after}});
  finish_defense_run(config.defense, s, model, config_json, summary, records, report);
  s.context.log("after: " + after.summary());
  return summary;
}

}  // namespace nad::pipeline
