#include <memory>

#include "common.h"
#include "nad/pipeline/inspect_data_run.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_inspect_data(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "inspect-data",
      "find the poisoned images of a training set (poisoned as nad train does with the same "
      "attack options and seed) from a model trained on it: Spectral Signatures (Tran et al. "
      "2018) and Activation Clustering (Chen et al. 2018); TPR and FPR against the rows known to "
      "be poisoned");
  auto config = std::make_shared<pipeline::InspectDataConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  app->add_option(flag::model, config->model, "a model trained on the poisoned training set")
      ->required();
  add_model_file_options(*app, config->model_options);
  app->add_option(flag::method, config->method, "spectral | clustering | both")
      ->capture_default_str()
      ->check(CLI::IsMember({"spectral", "clustering", "both"}));
  app->add_option(flag::expected_poison_rate, config->expected_poison_rate,
                  "Spectral Signatures: an upper bound on the poisoned share of a class; the "
                  "1.5 x rate x class size highest scores are suspect")
      ->capture_default_str();
  app->add_option(flag::size_threshold, config->size_threshold,
                  "Activation Clustering: a cluster holding less than this share of its class "
                  "is suspect")
      ->capture_default_str();
  app->add_option(flag::components, config->components,
                  "Activation Clustering: independent components the features are reduced to")
      ->capture_default_str();
  app->add_flag(
      flag::retrain, config->retrain,
      "then train a model again without the suspects (of both methods with --method "
      "both), as nad train --exclude-indices would, into OUT/retrain, with the inspected model's "
      "architecture and input normalisation; the training options below apply");
  add_train_loop_options(*app, config->train);
  app->add_option(flag::poisoned_indices, config->poisoned_indices,
                  "a training run's poisoned_indices.txt to measure against (default: the rows "
                  "this run's attack poisons)");
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    pipeline::run_inspect_data(*config);
  });
}

}  // namespace nad::cli
