#include "nad/train/report.h"

#include <cstdio>
#include <sstream>

#include "nad/util/files.h"
#include "nad/util/format.h"

namespace nad::train {

namespace {
std::string number(double value, const char* format = "%.4f") {
  return format_double(value, format);
}
std::string optional_number(const std::optional<double>& value) {
  return value ? number(*value) : std::string();
}
std::string percent_cell(const std::optional<double>& value) {
  return value ? number(*value, "%.2f") : std::string("-");
}
}  // namespace

void write_metrics_csv(const std::filesystem::path& file, const std::vector<EpochRecord>& records) {
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

std::string metrics_table(const std::vector<std::pair<std::string, Metrics>>& rows) {
  std::ostringstream out;
  out << "| model | ACC (%) | ASR (%) | RA (%) |\n|---|---:|---:|---:|\n";
  for (const auto& [name, m] : rows) {
    out << "| " << name << " | " << number(m.clean_acc, "%.2f") << " | " << percent_cell(m.asr)
        << " | " << percent_cell(m.robust_acc) << " |\n";
  }
  return out.str();
}

}  // namespace nad::train
