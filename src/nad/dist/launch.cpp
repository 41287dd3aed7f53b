#include "nad/dist/launch.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::dist {
namespace {

std::vector<pid_t>* running_children = nullptr;

// Ctrl-C or a scheduler's SIGTERM reaches the launcher: pass it on to the ranks.
void forward_signal(int signal_number) {
  if (!running_children) return;
  for (pid_t pid : *running_children) {
    if (pid > 0) kill(pid, signal_number);
  }
}

std::string self_executable() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return "nad";
  path[n] = '\0';
  return path;
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw UserError(std::string("nad launch: cannot open a socket: ") + strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    throw UserError(std::string("nad launch: cannot find a free port: ") + strerror(errno));
  }
  const int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

int launch_local(const LaunchConfig& config) {
  if (config.processes < 1) throw UserError(flag::nproc + " must be at least 1");
  if (config.command.empty()) throw UserError("nad launch: give the command after --");
  const int port = config.master_port > 0 ? config.master_port : free_local_port();
  std::vector<std::string> command = config.command;
  if (command[0] == "nad") command[0] = self_executable();

  std::vector<pid_t> children(config.processes, -1);
  running_children = &children;
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  std::fflush(nullptr);
  for (int rank = 0; rank < config.processes; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) {
      forward_signal(SIGKILL);
      throw UserError(std::string("nad launch: fork failed: ") + strerror(errno));
    }
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(config.processes).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(config.processes).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      for (auto& part : command) argv.push_back(part.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      std::fprintf(stderr, "nad launch: cannot run '%s': %s\n", argv[0], strerror(errno));
      _exit(127);
    }
    children[rank] = pid;
  }

  int result = 0;
  int remaining = config.processes;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::now();
  while (remaining > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, stopping ? WNOHANG : 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pid == 0) {  // stopping, and some ranks have not exited yet
      if (std::chrono::steady_clock::now() > stop_deadline) forward_signal(SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    for (int rank = 0; rank < config.processes; ++rank) {
      if (children[rank] != pid) continue;
      children[rank] = -1;
      --remaining;
      const int code = exit_code_of(status);
      if (code != 0 && result == 0) {
        result = code;
        if (remaining > 0) {
          std::fprintf(stderr, "nad launch: rank %d exited with code %d; stopping the others\n",
                       rank, code);
          forward_signal(SIGTERM);
          stopping = true;
          stop_deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int>(config.grace_seconds * 1000));
        }
      }
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  running_children = nullptr;
  return result;
}

}  // namespace nad::dist
