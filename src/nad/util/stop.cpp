#include "nad/util/stop.h"

#include <signal.h>

#include <atomic>
#include <cstring>

namespace nad {

namespace {
std::atomic<int> pending_signal{0};

void on_stop_signal(int signal_number) {
  if (pending_signal.load() == signal_number) {
    // The second time: the user does not want to wait for the step to finish.
    signal(signal_number, SIG_DFL);
    raise(signal_number);
    return;
  }
  pending_signal.store(signal_number);
}
}  // namespace

void install_stop_handlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  // No SA_RESTART: a blocking wait (a table cell's child process) returns with EINTR, so the
  // waiter can pass the request on.
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGXFSZ, SIG_IGN);
}

int stop_signal() { return pending_signal.load(); }

void request_stop(int signal_number) { pending_signal.store(signal_number); }

std::string signal_name(int signal_number) {
  switch (signal_number) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGKILL:
      return "SIGKILL";
    default:
      return "signal " + std::to_string(signal_number);
  }
}

Interrupted::Interrupted(const std::string& message, int signal_number)
    : RunStopped(message, 128 + signal_number, signal_name(signal_number)) {}

}  // namespace nad
