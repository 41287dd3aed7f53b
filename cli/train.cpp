#include <memory>

#include "common.h"
#include "nad/models/classifier.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void add_train_loop_options(CLI::App& app, pipeline::TrainConfig& config) {
  app.add_option(flag::epochs, config.epochs)->capture_default_str();
  app.add_option(flag::batch_size, config.batch_size)->capture_default_str();
  app.add_option(flag::lr, config.lr, "initial learning rate")->capture_default_str();
  app.add_option(flag::momentum, config.momentum)->capture_default_str();
  app.add_option(flag::weight_decay, config.weight_decay)->capture_default_str();
  app.add_option(flag::schedule, config.schedule, "constant | step | cosine")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "step", "cosine"}));
  app.add_option(flag::milestones, config.milestones, "step schedule: epochs where lr drops 10x")
      ->delimiter(',');
  add_augment_options(app, config.augment);
}

void setup_train(CLI::App& parent) {
  auto* app =
      parent.add_subcommand("train", "train a model from scratch, optionally on poisoned data");
  auto config = std::make_shared<pipeline::TrainConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_resume_option(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  add_attack_prep_options(*app, config->prep);
  std::string arch_help;
  for (const std::string& name : models::arch_names()) {
    arch_help += (arch_help.empty() ? "" : " | ") + name;
  }
  app->add_option(flag::arch, config->arch, arch_help)->capture_default_str();
  app->add_option(flag::input_norm, config->input_norm,
                  "the model's input normalisation, recorded in model.pt: none | cifar10 | "
                  "cifar100 | tiny | mnist | gtsrb | imagenet (BackdoorBench's values) | "
                  "M1,M2,M3/S1,S2,S3")
      ->capture_default_str();
  add_train_loop_options(*app, *config);
  app->add_option(flag::exclude_indices, config->exclude_indices,
                  "leave these rows of the (poisoned) training set out, one index per line (as "
                  "nad inspect-data's suspects-*.txt)");
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    pipeline::run_train(*config);
  });
}

}  // namespace nad::cli
