#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common.h"
#include "defense_registry.h"
#include "nad/pipeline/runs.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"
#include "nad/util/stop.h"

namespace nad::cli {

namespace {
// Runs this same binary with `args` in a child process (its output goes to ours), so a cell
// that fails or runs out of memory ends only that cell.
int run_self(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  static char name[] = "nad";
  argv.push_back(name);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    // A table killed outright (SIGKILL) takes its cell with it, so a resumed table never
    // finds an orphan still writing into the cell's folder.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(128 + SIGKILL);
    execv("/proc/self/exe", argv.data());
    std::fprintf(stderr, "nad: cannot run /proc/self/exe: %s\n", std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  bool passed_on = false;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    // Asked to stop: the cell saves its state and stops too. SIGTERM, since a Ctrl-C on the
    // terminal reached the cell already, and a second SIGINT would end it at once.
    if (stop_requested() && !passed_on) {
      kill(pid, SIGTERM);
      passed_on = true;
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
}  // namespace

void setup_table(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "table",
      "run a grid of datasets x attacks x defenses from an experiment file and write the paper's "
      "comparison table (resumable: finished cells are kept)");
  auto config = std::make_shared<pipeline::TableConfig>();
  config->defenses = defense_infos();
  app->add_option(flag::config, config->config_file,
                  "experiment file, e.g. experiments/smoke.json (required unless --resume)");
  app->add_option(flag::out, config->out,
                  "output folder (cells, table.md, results.json, curves/; required unless " +
                      flag::resume + ")");
  app->add_option(flag::resume, config->resume,
                  "continue the table in this folder: finished cells are kept, an interrupted "
                  "one continues from its saved state");
  app->add_option(flag::data_dir, config->data_dir,
                  "use this data folder for every dataset of the experiment");
  app->add_option(flag::attacks, config->attacks, "run only these attacks of the experiment")
      ->delimiter(',');
  app->add_option(flag::model, config->models,
                  "DATASET/ATTACK=FILE: use this backdoored model instead of training one (its "
                  "row's Before column is measured with nad eval); repeatable");
  app->add_option(flag::triggered_test, config->triggered_tests,
                  "DATASET/ATTACK=DIR: measure that row's ASR on these triggered test images "
                  "(DIR/<true label>/*.png, as nad eval --triggered-test) instead of nad's "
                  "trigger; with --model, rows of attacks nad does not implement; repeatable");
  app->add_option(flag::threads, config->threads, "CPU threads of each cell (0: all cores)")
      ->capture_default_str();
  app->add_option(flag::device, config->device, "cpu or cuda[:N]")->capture_default_str();
  auto shard = std::make_shared<std::string>();
  app->add_option(flag::shard, *shard,
                  "I/N: run only every N-th row (dataset x attack) from row I, for N machines "
                  "sharing --out; then run once with --merge");
  app->add_flag(flag::merge, config->merge,
                "run nothing: write the table from the finished cells of all shards");
  app->add_flag(flag::quiet, config->quiet, "no progress output");
  app->callback([config, shard] {
    if (!shard->empty()) {
      const size_t slash = shard->find('/');
      try {
        size_t used = 0;
        config->shard_index = std::stoi(shard->substr(0, slash), &used);
        if (slash == std::string::npos || used != slash) throw std::invalid_argument("");
        config->shard_count = std::stoi(shard->substr(slash + 1), &used);
        if (used != shard->size() - slash - 1) throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw UserError(flag::shard + " must be I/N (for example 0/2), not '" + *shard + "'");
      }
    }
    pipeline::run_table(*config, run_self);
  });
}

}  // namespace nad::cli
