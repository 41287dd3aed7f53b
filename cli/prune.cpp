#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_prune(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "prune",
      "Fine-pruning: prune the last feature map's least active channels on the clean subset, "
      "then finetune");
  auto config = std::make_shared<pipeline::PruneConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_defense_options(*app, config->defense, *label_mode);
  app->add_option(flag::max_acc_drop, config->max_acc_drop,
                  "stop pruning before held-out clean accuracy drops by more than this (points)")
      ->capture_default_str();
  app->add_option(flag::prune_ratio, config->prune_ratio, "largest fraction of channels pruned")
      ->capture_default_str();
  app->add_option(flag::prune_layer, config->prune_layer,
                  "prune this convolution or BatchNorm layer's output channels (a parameter path "
                  "such as layer4.1.conv2; needed for TorchScript models; default: the last "
                  "group's output)");
  app->add_option(flag::curve_points, config->curve_points,
                  "test-set measurements along the pruning path (prune_curve.csv)")
      ->capture_default_str();
  app->callback([app, config, label_mode] {
    finish_attack_options(config->defense.common.attack, *label_mode);
    finish_defense_options(*app, config->defense);
    pipeline::run_prune(*config);
  });
}

void setup_mcr(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "mcr",
      "Mode Connectivity Repair: train a Bezier curve from the model to a finetuned copy on the "
      "clean subset and take the model at --t");
  auto config = std::make_shared<pipeline::McrConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_defense_options(*app, config->defense, *label_mode);
  app->add_option(flag::end_model, config->end_model,
                  "the curve's far end (default: --model finetuned on the clean subset)");
  app->add_option(flag::curve_epochs, config->curve_epochs, "epochs of curve training")
      ->capture_default_str();
  app->add_option(flag::curve_lr, config->curve_lr, "learning rate of curve training")
      ->capture_default_str();
  app->add_option(flag::points, config->points, "points evaluated along t in [0, 1]")
      ->capture_default_str();
  app->add_option(flag::t, config->t, "where on the curve the output model lies")
      ->capture_default_str();
  app->callback([app, config, label_mode] {
    finish_attack_options(config->defense.common.attack, *label_mode);
    finish_defense_options(*app, config->defense);
    pipeline::run_mcr(*config);
  });
}

}  // namespace nad::cli
