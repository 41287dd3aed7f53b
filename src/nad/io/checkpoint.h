#pragma once
#include <filesystem>

#include "nad/models/classifier.h"

namespace nad::io {

// `model.pt`: a plain dict {"arch", "num_classes", "input_shape": [C, H, W], "state_dict"}
// written with torch::pickle_save, so Python's torch.load reads it and the state_dict loads
// into the PyTorch original of the architecture. Written atomically.
void save_checkpoint(const std::filesystem::path& file, const models::Classifier& model,
                     const models::ModelSpec& spec);

struct LoadedModel {
  models::Classifier model;
  models::ModelSpec spec;
};

// Reads a checkpoint written by save_checkpoint. Any missing, unexpected or wrongly shaped
// weight is a UserError that lists the keys.
LoadedModel load_checkpoint(const std::filesystem::path& file, torch::Device device = torch::kCPU);

// Loads `state` (name -> tensor) into `model`, checking names and shapes; `source` names the
// file in error messages.
void load_state_dict(const models::Classifier& model,
                     const std::vector<std::pair<std::string, torch::Tensor>>& state,
                     const std::string& source);

}  // namespace nad::io
