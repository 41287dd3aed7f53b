#include "support/python.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>

namespace nad::test {

namespace {
int run(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    if (output) output->append(buffer.data(), n);
  }
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

bool python_torch_available() {
  static const bool available =
      std::filesystem::exists(kPython) &&
      run(std::string(kPython) + " -c 'import torch, numpy'", nullptr) == 0;
  return available;
}

int run_python_script(const std::string& script, const std::string& arguments,
                      std::string* output) {
  return run(std::string(kPython) + " " + NAD_SCRIPTS_DIR + "/" + script + " " + arguments, output);
}

}  // namespace nad::test
