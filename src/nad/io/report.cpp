#include "nad/io/report.h"

#include <cstdio>
#include <fstream>
#include <sstream>

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

namespace {
std::string number(double value, const char* format = "%.4f") {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}
std::string optional_number(const std::optional<double>& value) {
  return value ? number(*value) : std::string();
}
std::string percent_cell(const std::optional<double>& value) {
  return value ? number(*value, "%.2f") : std::string("-");
}
}  // namespace

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

void write_metrics_csv(const std::filesystem::path& file,
                       const std::vector<train::EpochRecord>& records) {
  std::ostringstream out;
  out << "phase,epoch,lr,loss,train_acc,clean_acc,asr,robust_acc,seconds\n";
  for (const auto& r : records) {
    out << r.phase << ',' << r.epoch << ',' << number(r.lr, "%.6g") << ',' << number(r.loss) << ','
        << number(r.train_acc) << ',' << number(r.metrics.clean_acc) << ','
        << optional_number(r.metrics.asr) << ',' << optional_number(r.metrics.robust_acc) << ','
        << number(r.seconds, "%.3f") << '\n';
  }
  write_text_atomic(file, out.str());
}

std::string metrics_table(const std::vector<std::pair<std::string, train::Metrics>>& rows) {
  std::ostringstream out;
  out << "| model | ACC (%) | ASR (%) | RA (%) |\n|---|---:|---:|---:|\n";
  for (const auto& [name, m] : rows) {
    out << "| " << name << " | " << number(m.clean_acc, "%.2f") << " | " << percent_cell(m.asr)
        << " | " << percent_cell(m.robust_acc) << " |\n";
  }
  return out.str();
}

}  // namespace nad::io
