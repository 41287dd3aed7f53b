#pragma once

#include <string>

namespace nad {

// One number through a printf format ("%.6f", "%g", "%.1f"), for messages and reports.
std::string format_double(double value, const char* format);

}  // namespace nad
