#pragma once
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "nad/train/records.h"

namespace nad::train {

// metrics.csv: one row per epoch: phase, epoch, lr, loss, train_acc, clean_acc, asr,
// robust_acc, seconds (asr and robust_acc empty without an attack).
void write_metrics_csv(const std::filesystem::path& file, const std::vector<EpochRecord>& records);

// A before/after table in Markdown: one row per model state, columns ACC, ASR, RA.
std::string metrics_table(const std::vector<std::pair<std::string, Metrics>>& rows);

}  // namespace nad::train
