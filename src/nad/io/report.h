#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nad/train/trainer.h"

namespace nad::io {

// Pretty JSON, written atomically.
void write_json(const std::filesystem::path& file, const nlohmann::json& value);
// A JSON file nad wrote, or null when it is missing or not valid JSON.
nlohmann::json read_json_or_null(const std::filesystem::path& file);

// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
std::string csv_field(const std::string& text);

// metrics.csv: one row per epoch: phase, epoch, lr, loss, train_acc, clean_acc, asr,
// robust_acc, seconds (asr and robust_acc empty without an attack).
void write_metrics_csv(const std::filesystem::path& file,
                       const std::vector<train::EpochRecord>& records);

// A before/after table in Markdown: one row per model state, columns ACC, ASR, RA.
std::string metrics_table(const std::vector<std::pair<std::string, train::Metrics>>& rows);

}  // namespace nad::io
