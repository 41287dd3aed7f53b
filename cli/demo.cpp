#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_demo(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "demo", "the main job on Fashion-MNIST: backdoor a CNN with BadNets, erase it with NAD");
  auto config = std::make_shared<pipeline::DemoConfig>();
  app->add_option(flag::out, config->out, "output folder")->capture_default_str();
  app->add_option(flag::data_dir, config->data_dir,
                  "Fashion-MNIST folder (default: Debian's package)");
  app->add_option(flag::seed, config->seed)->capture_default_str();
  app->add_option(flag::threads, config->threads, "CPU threads (0: all cores)")
      ->capture_default_str();
  app->add_option(flag::device, config->device, "cpu or cuda[:N]")->capture_default_str();
  app->add_option(flag::train_epochs, config->train_epochs, "epochs of backdoor training")
      ->capture_default_str();
  app->callback([config] { pipeline::run_demo(*config); });
}

}  // namespace nad::cli
