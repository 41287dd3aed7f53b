#include <memory>

#include "common.h"
#include "nad/pipeline/anp_run.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_anp(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "anp",
      "Adversarial Neuron Pruning (Wu & Wang 2021): learn a mask on every BatchNorm neuron on "
      "the clean subset so that the model stays right under adversarial perturbations of its "
      "neurons, then prune the neurons whose mask falls to --anp-threshold (no finetuning)");
  auto config = std::make_shared<pipeline::AnpConfig>();
  pipeline::DefenseConfig& d = config->defense;
  // The authors' data: batches of 128 with random crop and flip, no Cutout. No rate is searched
  // (the masks' SGD rate is --anp-mask-lr), so nothing of the clean subset is held out.
  d.lr = "0.2";
  d.batch_size = 128;
  d.augment = pipeline::AugmentConfig{};
  auto label_mode = std::make_shared<std::string>("all2one");
  add_clean_subset_defense_options(*app, d, *label_mode);
  app->add_option(flag::batch_size, d.batch_size, "batch size of the mask optimisation")
      ->capture_default_str();
  add_augment_options(*app, d.augment);
  defenses::AnpOptions& a = config->anp;
  app->add_option(flag::anp_eps, a.eps, "bound of the multiplicative neuron perturbations")
      ->capture_default_str();
  app->add_option(flag::anp_steps, a.steps, "signed-gradient steps of the perturbation per batch")
      ->capture_default_str();
  app->add_option(flag::anp_alpha, a.alpha,
                  "weight of the unperturbed loss (1 - alpha: the perturbed one)")
      ->capture_default_str();
  app->add_option(flag::anp_iterations, a.iterations, "mask updates (batches)")
      ->capture_default_str();
  app->add_option(flag::anp_rounds, a.rounds,
                  "measure the masked model (and save the state) after each of this many parts")
      ->capture_default_str();
  app->add_option(flag::anp_mask_lr, a.mask_lr, "SGD rate of the masks (momentum 0.9)")
      ->capture_default_str();
  app->add_option(flag::anp_prune_by, config->prune_by,
                  "threshold: prune every neuron whose mask is at most --anp-threshold; "
                  "fraction: the --anp-prune-fraction of all neurons with the lowest masks")
      ->capture_default_str()
      ->check(CLI::IsMember({"threshold", "fraction"}));
  app->add_option(flag::anp_threshold, a.threshold, "mask value at or below which a neuron goes")
      ->capture_default_str();
  app->add_option(flag::anp_prune_fraction, a.fraction, "share of all neurons pruned by fraction")
      ->capture_default_str();
  add_verify_options(*app, d);
  app->callback([config, label_mode] {
    finish_attack_options(config->defense.common.attack, *label_mode);
    pipeline::run_anp(*config);
  });
}

}  // namespace nad::cli
