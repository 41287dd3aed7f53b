#pragma once
#include <stdexcept>
#include <string>

// Graceful stops: SIGINT and SIGTERM only raise a flag, which the training loops read after
// each step; they then save a resumable state and throw Interrupted. A second signal of the
// same kind ends the process at once (the default action), for a user who will not wait.
namespace nad {

// Installs the handlers (once, at start-up). Also ignores SIGXFSZ, so that a write past the
// file-size limit fails with an error message instead of killing the process.
void install_stop_handlers();

// The signal that asked this process to stop (SIGINT or SIGTERM), or 0.
int stop_signal();
inline bool stop_requested() { return stop_signal() != 0; }
// Tests and the distributed loop: behave as if `signal_number` had arrived (0 clears).
void request_stop(int signal_number);

// Thrown where a run stops early on purpose; the CLI exits with exit_code() after recording
// the run as incomplete.
class RunStopped : public std::runtime_error {
 public:
  RunStopped(const std::string& message, int exit_code, std::string reason)
      : std::runtime_error(message), exit_code_(exit_code), reason_(std::move(reason)) {}
  int exit_code() const { return exit_code_; }
  const std::string& reason() const { return reason_; }  // "SIGINT", "SIGTERM", "diverged"

 private:
  int exit_code_;
  std::string reason_;
};

// A stop by signal: exit code 128 + the signal, as a shell reports a process killed by it.
class Interrupted : public RunStopped {
 public:
  Interrupted(const std::string& message, int signal_number);
};

// Exit code of a run stopped because its loss was not finite.
constexpr int kDivergedExitCode = 3;

// The name of a signal ("SIGINT").
std::string signal_name(int signal_number);

}  // namespace nad
