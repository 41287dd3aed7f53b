#include "support/user_error.h"

#include <gtest/gtest.h>

#include <exception>

#include "nad/util/error.h"

namespace nad::test {

std::string user_error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UserError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected nad::UserError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected nad::UserError, nothing was thrown";
  return "";
}

void expect_user_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  const std::string message = user_error_message(fn);
  if (message.empty()) return;  // already a failure
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos)
        << "message: " << message << "\nexpected to contain: " << part;
  }
}

}  // namespace nad::test
