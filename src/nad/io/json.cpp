#include "nad/io/json.h"

#include <fstream>

#include "nad/util/files.h"

namespace nad::io {

void write_json(const std::filesystem::path& file, const nlohmann::json& value) {
  write_text_atomic(file, value.dump(2) + "\n");
}

nlohmann::json read_json_or_null(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nullptr;
  }
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace nad::io
