#include <memory>

#include "common.h"
#include "nad/pipeline/fst_run.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_fst(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "fst",
      "Feature Shift Tuning (Min et al. 2023): re-initialise the classifier and finetune on the "
      "clean subset while pushing its weights away from the original ones");
  auto config = std::make_shared<pipeline::FstConfig>();
  // The authors' schedule (fine_tune/ft.py, their CIFAR-10 example): 10 epochs at 0.01, cosine,
  // batch 128, momentum 0.9, no weight decay, random crop and flip.
  config->defense.epochs = 10;
  config->defense.lr = "0.01";
  config->defense.batch_size = 128;
  config->defense.weight_decay = 0;
  config->defense.augment = pipeline::AugmentConfig{};
  auto label_mode = std::make_shared<std::string>("all2one");
  add_defense_options(*app, config->defense, *label_mode);
  app->add_option(flag::fst_alpha, config->alpha,
                  "weight of the inner product with the original classifier weight")
      ->capture_default_str();
  app->callback([app, config, label_mode] {
    finish_attack_options(config->defense.common.attack, *label_mode);
    finish_defense_options(*app, config->defense);
    pipeline::run_fst(*config);
  });
}

}  // namespace nad::cli
