#pragma once
#include <string>

namespace nad::test {

// Debian's interpreter with python3-torch, used for PyTorch parity checks only.
constexpr const char* kPython = "/usr/bin/python3";

// True when `/usr/bin/python3 -c "import torch"` works (checked once per process).
bool python_torch_available();

// Runs scripts/<script> with the arguments (shell-quoted by the caller) under kPython;
// returns the exit code and puts stdout + stderr into *output.
int run_python_script(const std::string& script, const std::string& arguments, std::string* output);

}  // namespace nad::test
