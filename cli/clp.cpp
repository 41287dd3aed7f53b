#include <memory>

#include "common.h"
#include "nad/pipeline/clp_run.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_clp(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "clp",
      "Channel Lipschitzness-based Pruning (Zheng et al. 2022): prune the channels whose "
      "Lipschitz upper bound is an outlier in their layer; data-free: needs no clean images "
      "(the dataset only measures the model)");
  auto config = std::make_shared<pipeline::ClpConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  add_triggered_test_option(*app, config->common);
  app->add_option(flag::model, config->model,
                  "checkpoint to clean: nad's model.pt, a torch.save file or a TorchScript model")
      ->required();
  add_model_file_options(*app, config->model_options);
  app->add_option(flag::u, config->u,
                  "threshold: prune channels whose bound exceeds their layer's mean + u std")
      ->capture_default_str();
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    pipeline::run_clp(*config);
  });
}

}  // namespace nad::cli
