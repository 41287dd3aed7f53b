#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "nad/defenses/attention.h"
#include "nad/models/classifier.h"
#include "nad/pipeline/context.h"

namespace nad::pipeline {

struct LabelledModel {
  std::string label;
  models::Classifier model;
};

// `count` test rows for a figure, drawn with the seed among the images the attack targets (not
// of the target class, for all-to-one) so that the trigger has something to change.
torch::Tensor figure_rows(const RunContext& context, int64_t count, uint64_t seed);

// Draws, for each test row, every model's attention maps of the triggered input (the input
// itself without an attack) side by side, and writes the PNG. Returns each model's predictions
// on the rows, for the record.
nlohmann::json write_attention_png(const std::filesystem::path& file, const RunContext& context,
                                   const std::vector<LabelledModel>& models,
                                   const torch::Tensor& rows, double power,
                                   defenses::AttentionKind kind);

}  // namespace nad::pipeline
