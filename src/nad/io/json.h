#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace nad::io {

// Pretty JSON, written atomically.
void write_json(const std::filesystem::path& file, const nlohmann::json& value);
// A JSON file nad wrote, or null when it is missing or not valid JSON.
nlohmann::json read_json_or_null(const std::filesystem::path& file);

// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
std::string csv_field(const std::string& text);

}  // namespace nad::io
