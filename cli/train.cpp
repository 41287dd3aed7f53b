#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"

namespace nad::cli {

void setup_train(CLI::App& parent) {
  auto* app =
      parent.add_subcommand("train", "train a model from scratch, optionally on poisoned data");
  auto config = std::make_shared<pipeline::TrainConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_resume_option(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  add_attack_prep_options(*app, config->prep);
  app->add_option("--arch", config->arch,
                  "wrn-16-1 (wrn-D-K) | preact-resnet18 | resnet18 | mnist-cnn")
      ->capture_default_str();
  app->add_option("--epochs", config->epochs)->capture_default_str();
  app->add_option("--batch-size", config->batch_size)->capture_default_str();
  app->add_option("--lr", config->lr, "initial learning rate")->capture_default_str();
  app->add_option("--momentum", config->momentum)->capture_default_str();
  app->add_option("--weight-decay", config->weight_decay)->capture_default_str();
  app->add_option("--schedule", config->schedule, "constant | step | cosine")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "step", "cosine"}));
  app->add_option("--milestones", config->milestones, "step schedule: epochs where lr drops 10x")
      ->delimiter(',');
  add_augment_options(*app, config->augment);
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    pipeline::run_train(*config);
  });
}

}  // namespace nad::cli
