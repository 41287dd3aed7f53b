#pragma once
#include <functional>
#include <string>
#include <vector>

namespace nad::test {

// Runs `fn`, which must throw nad::UserError, and returns its message; anything else (no
// exception, another exception) fails the test and returns "".
std::string user_error_message(const std::function<void()>& fn);

// The same, and the message must hold every one of `parts` (a file name, a field).
void expect_user_error(const std::function<void()>& fn, const std::vector<std::string>& parts);

}  // namespace nad::test
