#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"

namespace nad::cli {

void setup_finetune(CLI::App& parent) {
  auto* app =
      parent.add_subcommand("finetune", "the baseline defense: finetune on the clean subset");
  auto config = std::make_shared<pipeline::DefenseConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_defense_options(*app, *config, *label_mode);
  app->callback([app, config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    finish_defense_options(*app, *config);
    pipeline::run_finetune(*config);
  });
}

}  // namespace nad::cli
