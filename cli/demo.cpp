#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"

namespace nad::cli {

void setup_demo(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "demo", "the main job on Fashion-MNIST: backdoor a CNN with BadNets, erase it with NAD");
  auto config = std::make_shared<pipeline::DemoConfig>();
  app->add_option("--out", config->out, "output folder")->capture_default_str();
  app->add_option("--data-dir", config->data_dir,
                  "Fashion-MNIST folder (default: Debian's package)");
  app->add_option("--seed", config->seed)->capture_default_str();
  app->add_option("--threads", config->threads, "CPU threads (0: all cores)")
      ->capture_default_str();
  app->add_option("--device", config->device, "cpu or cuda[:N]")->capture_default_str();
  app->add_option("--train-epochs", config->train_epochs, "epochs of backdoor training")
      ->capture_default_str();
  app->callback([config] { pipeline::run_demo(*config); });
}

}  // namespace nad::cli
