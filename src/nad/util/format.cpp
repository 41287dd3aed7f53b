#include "nad/util/format.h"

#include <cstdio>

namespace nad {

std::string format_double(double value, const char* format) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

}  // namespace nad
