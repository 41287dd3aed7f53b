#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_erase(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "erase",
      "erase a backdoor with Neural Attention Distillation (attack options only measure ASR)");
  auto config = std::make_shared<pipeline::EraseConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_defense_options(*app, config->defense, *label_mode);
  app->add_option(flag::teacher, config->teacher,
                  "teacher checkpoint, nad's or a torch.save file (default: finetune one)");
  app->add_option(flag::teacher_arch, config->teacher_arch,
                  "architecture of the teacher file (default: what it says, else guessed)");
  app->add_option(flag::teacher_epochs, config->teacher_epochs, "epochs of teacher finetuning")
      ->capture_default_str();
  app->add_option(
         flag::beta, config->betas,
         "attention-loss weight per group (default: 500,1000,1000; 500,1000 for mnist-cnn)")
      ->delimiter(',');
  app->add_option(flag::groups, config->groups,
                  "groups whose attention is distilled, by number (from 1) or name (default: all); "
                  "torchvision architectures also take other stages by name, e.g. "
                  "layer1,layer2,layer3")
      ->delimiter(',');
  add_attention_map_options(*app, config->power, config->attention);
  app->callback([app, config, label_mode] {
    finish_attack_options(config->defense.common.attack, *label_mode);
    finish_defense_options(*app, config->defense);
    pipeline::run_erase(*config);
  });
}

}  // namespace nad::cli
