#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_poison(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "poison",
      "write the poisoned training set as an image folder (train/<class>/<index>.png, clean "
      "test/), manifest.json and samples.png");
  auto config = std::make_shared<pipeline::PoisonConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  add_attack_prep_options(*app, config->prep);
  app->add_option(flag::prep_arch, config->prep.arch,
                  "trojan and cl: architecture of the clean model trained here (default: "
                  "wrn-16-1, mnist-cnn for one-channel data)");
  app->add_option(flag::sample_pairs, config->pairs_per_row,
                  "samples.png: clean/triggered pairs per class row")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option(flag::format, config->format,
                  "png: image folders; npy: NumPy arrays (train, clean train, test, and the "
                  "triggered test set nad measures ASR on), for PyTorch or NumPy code")
      ->capture_default_str()
      ->check(CLI::IsMember({"png", "npy"}));
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    pipeline::run_poison(*config);
  });
}

}  // namespace nad::cli
