#pragma once
#include <string>
#include <vector>

namespace nad::dist {

// `nad launch`: starts `processes` local copies of a command with the torchrun environment
// (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so that they form
// one data-parallel run. When one exits with an error the others are stopped (SIGTERM, then
// SIGKILL after `grace_seconds`).
struct LaunchConfig {
  int processes = 2;
  std::vector<std::string> command;  // "nad" as the program means this very binary
  int master_port = 0;               // 0: a free port
  double grace_seconds = 10;
};

// Returns the exit code to report: 0 when every process succeeded, else the first failure's
// code (128 + signal for a process killed by a signal).
int launch_local(const LaunchConfig& config);

// A TCP port that was free a moment ago on the loopback interface.
int free_local_port();

}  // namespace nad::dist
