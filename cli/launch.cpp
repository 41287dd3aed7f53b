#include <cstdlib>
#include <memory>

#include "common.h"
#include "nad/dist/launch.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_launch(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "launch",
      "run a command as N data-parallel processes on this machine (c10d, Gloo on the CPU): "
      "nad launch --nproc 2 -- nad train ...");
  auto config = std::make_shared<dist::LaunchConfig>();
  app->add_option(flag::nproc, config->processes, "number of processes")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app->add_option(flag::master_port, config->master_port, "rendezvous port (0: a free one)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app->add_option(flag::grace, config->grace_seconds,
                  "seconds the other processes get to exit after one failed")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("command", config->command, "the command each process runs (after --)")
      ->required();
  app->callback([config] {
    const int code = dist::launch_local(*config);
    if (code != 0) std::exit(code);
  });
}

}  // namespace nad::cli
