#pragma once
#include <stdexcept>
#include <string>

namespace nad {

// A mistake in what the user gave us (a path, an option, a file's contents). The CLI prints
// the message alone and exits with code 2; anything else is a bug and exits with 1.
class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace nad
