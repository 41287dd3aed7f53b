#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_eval(CLI::App& parent) {
  auto* app = parent.add_subcommand("eval", "measure clean accuracy, ASR and robust accuracy");
  auto config = std::make_shared<pipeline::EvalConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  add_triggered_test_option(*app, config->common);
  app->add_option(flag::model, config->model,
                  "checkpoint to evaluate: nad's model.pt or a torch.save file")
      ->required();
  add_model_file_options(*app, config->model_options);
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    pipeline::run_eval(*config);
  });
}

}  // namespace nad::cli
