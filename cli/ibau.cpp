#include <memory>

#include "common.h"
#include "nad/pipeline/ibau_run.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_ibau(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "ibau",
      "Implicit Backdoor Adversarial Unlearning (Zeng et al. 2022): alternately find a "
      "universal perturbation that flips the model's predictions on the clean subset and train "
      "the model to resist it, through the implicit hypergradient");
  auto config = std::make_shared<pipeline::IbauConfig>();
  pipeline::DefenseConfig& d = config->defense;
  // The authors' defaults: batches of 100 of unaugmented clean images, Adam at 0.001.
  d.lr = "0.001";
  d.batch_size = 100;
  auto label_mode = std::make_shared<std::string>("all2one");
  add_clean_subset_defense_options(*app, d, *label_mode);
  app->add_option(flag::batch_size, d.batch_size, "batch size")->capture_default_str();
  app->add_option(flag::lr, d.lr, "Adam's learning rate for the model")->capture_default_str();
  defenses::IbauOptions& o = config->ibau;
  app->add_option(flag::ibau_rounds, o.rounds, "rounds of perturbation and unlearning")
      ->capture_default_str();
  app->add_option(flag::ibau_k, o.fixed_point_steps,
                  "fixed-point steps of the implicit hypergradient")
      ->capture_default_str();
  app->add_option(flag::ibau_inner_lr, o.inner_lr, "gradient step of the inner fixed-point map")
      ->capture_default_str();
  app->add_option(flag::ibau_perturbation_lr, o.perturbation_lr,
                  "SGD rate of the universal perturbation")
      ->capture_default_str();
  app->add_option(flag::ibau_radius, o.perturbation_radius,
                  "L2 norm the perturbation is projected to at most")
      ->capture_default_str();
  app->add_option(flag::ibau_portion, o.portion,
                  "share of each unlearning batch that carries the perturbation")
      ->capture_default_str();
  add_verify_options(*app, d);
  app->callback([config, label_mode] {
    finish_attack_options(config->defense.common.attack, *label_mode);
    pipeline::run_ibau(*config);
  });
}

}  // namespace nad::cli
