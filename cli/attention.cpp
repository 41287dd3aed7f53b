#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_attention(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "attention", "draw attention maps of one or more models on the same (triggered) test images");
  auto config = std::make_shared<pipeline::AttentionConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  app->add_option(flag::model, config->model, "checkpoint: nad's model.pt or a torch.save file")
      ->required();
  app->add_option(flag::compare, config->compare,
                  "more checkpoints drawn below the first (e.g. finetuned, NAD)")
      ->delimiter(',');
  app->add_option(flag::labels, config->labels,
                  "one name per model, in order (default: each file's folder or name)")
      ->delimiter(',');
  add_model_file_options(*app, config->model_options);
  app->add_option(flag::images, config->images, "test images drawn with the seed")
      ->capture_default_str();
  app->add_option(flag::rows, config->rows, "these test rows instead (0-based)")->delimiter(',');
  add_attention_map_options(*app, config->power, config->attention);
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    pipeline::run_attention(*config);
  });
}

}  // namespace nad::cli
