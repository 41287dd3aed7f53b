#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common.h"
#include "defense_registry.h"
#include "nad/dist/process_group.h"
#include "nad/pipeline/context.h"
#include "nad/util/error.h"
#include "nad/util/stop.h"

int main(int argc, char** argv) {
  CLI::App app{
      "nad: plant backdoors in image classifiers, erase them with Neural Attention Distillation "
      "(ICLR 2021) and its baselines, and measure clean accuracy and attack success rate."};
  app.require_subcommand(1);
  nad::cli::setup_train(app);
  nad::cli::setup_eval(app);
  nad::cli::setup_predict(app);
  for (const auto& defense : nad::cli::defense_registry()) defense.setup(app);
  nad::cli::setup_attention(app);
  nad::cli::setup_scan(app);
  nad::cli::setup_table(app);
  nad::cli::setup_demo(app);
  nad::cli::setup_export(app);
  nad::cli::setup_poison(app);
  nad::cli::setup_trojan_trigger(app);
  nad::cli::setup_strip(app);
  nad::cli::setup_inspect_data(app);
  nad::cli::setup_launch(app);
  // Ctrl-C and SIGTERM: the running step finishes, the state is saved, then the run stops.
  nad::install_stop_handlers();
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    args = nad::cli::expand_resume(args);
    nad::pipeline::set_command_line(args);
    // CLI11 parses a vector in reverse order.
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.name(argv[0]);
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    // CLI11 returns 0 for --help and a non-zero code for usage errors; usage errors exit 2.
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const nad::UserError& e) {
    std::fprintf(stderr, "nad: error: %s\n", e.what());
    return 2;
  } catch (const nad::pipeline::RunAlreadyComplete& e) {
    std::fprintf(stderr, "nad: nothing to resume: %s\n", e.what());
    return 0;
  } catch (const nad::RunStopped& e) {
    // A stop on purpose (a signal) or a diverged loss: the states saved so far stay, and
    // summary.json says the run is incomplete and how to resume it.
    std::fprintf(stderr, "nad: %s: %s\n", e.reason() == "diverged" ? "error" : "stopped", e.what());
    try {
      nad::pipeline::record_stopped_run(e.reason(), e.what());
    } catch (const std::exception& write_error) {
      std::fprintf(stderr, "nad: error: %s\n", write_error.what());
    }
    return e.exit_code();
  } catch (const nad::dist::DistError& e) {
    // A lost rank: not a bug in this process, and nothing to wait for. Quit at once, since
    // tearing down a process group whose peers are gone can block.
    std::fprintf(stderr, "nad: error: %s\n", e.what());
    std::fflush(stderr);
    std::_Exit(1);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "nad: internal error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nad: internal error: %s\n", e.what());
    return 1;
  }
  return nad::cli::exit_code();
}
