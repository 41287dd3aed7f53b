#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "nad/util/flags.h"

namespace nad::models {

// A model's input preprocessing: per-channel (x - mean) / std on [0, 1] inputs, applied after
// any trigger and augmentation and before the first layer. Part of the model, because a model
// trained on normalised inputs is wrong on any others.
struct InputNorm {
  std::string name = "none";  // a preset's name, "custom" for given values, or "none"
  std::vector<double> mean;   // empty: no normalisation
  std::vector<double> std;

  bool identity() const { return mean.empty(); }
  // "cifar10 (mean 0.4914,0.4822,0.4465 / std 0.247,0.243,0.261)" or "none".
  std::string describe() const;
  nlohmann::json to_json() const;
  bool operator==(const InputNorm& other) const { return mean == other.mean && std == other.std; }
};

// The named presets, BackdoorBench's values (get_dataset_normalization) plus imagenet.
const std::vector<std::string>& input_norm_presets();

// Parses --input-norm: none, a preset name, or M1,M2,M3/S1,S2,S3 (any channel count). A bad
// value is a UserError naming `option`.
InputNorm parse_input_norm(const std::string& text, const std::string& option = flag::input_norm);

// The normalisation BackdoorBench applies for its dataset name (`clean_data` in its records:
// cifar10, cifar100, tiny, mnist, gtsrb, ...); nullopt for a name it does not normalise by.
std::optional<InputNorm> backdoorbench_input_norm(const std::string& dataset);

// Reads what to_json wrote (nad's model.pt and config files); UserError naming `where`.
InputNorm input_norm_from_values(const std::string& name, const std::vector<double>& mean,
                                 const std::vector<double>& std, const std::string& where);

}  // namespace nad::models
