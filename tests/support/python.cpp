#include "support/python.h"

#include <filesystem>

#include "support/cli.h"

namespace nad::test {

namespace {
int run(const std::string& command, std::string* output) {
  CommandResult result = run_shell(command);
  if (output) *output += result.output;
  return result.exit_code;
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
