#pragma once
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "nad/io/torch_file.h"
#include "nad/models/classifier.h"
#include "nad/models/registry.h"

namespace nad::models {

// `model.pt`: a plain dict {"arch", "num_classes", "input_shape": [C, H, W], "input_norm":
// {"name", "mean", "std"}, "state_dict"}
// written with torch::pickle_save, so Python's torch.load reads it and the state_dict loads
// into the PyTorch original of the architecture. Written atomically.
void save_checkpoint(const std::filesystem::path& file, const models::Classifier& model,
                     const models::ModelSpec& spec);

// What to assume about a checkpoint that does not say it (PyTorch files hold only weights).
struct LoadOptions {
  std::string arch;         // empty: the file's, else guessed from the weight names
  int64_t num_classes = 0;  // 0: the file's, else the classifier's rows
  // [C, H, W]; empty: the file's, else C from the first convolution and 32 x 32.
  std::vector<int64_t> input_shape;
  bool allow_partial = false;  // keep initial values for missing weights, skip the rest
  // --input-norm: overrides what the file says; nullopt: the file's (nad's model.pt, or a
  // BackdoorBench record's dataset), else none.
  std::optional<models::InputNorm> input_norm;
  torch::Device device = torch::kCPU;
};

struct LoadedModel {
  models::Classifier model;
  models::ModelSpec spec;
  // Things skipped on the way (globals beside the weights, --allow-partial leftovers), for the
  // caller to print.
  std::vector<std::string> warnings;
  // What was read, for logs: "wrn-16-1 (guessed from the weight names), 10 classes; legacy
  // torch.save format, bare state_dict".
  std::string description;
  // Where the input normalisation came from: "--input-norm", "model.pt", "BackdoorBench record
  // (clean_data 'cifar10')" or "none given".
  std::string input_norm_source;
};

// Reads nad's model.pt or any torch.save checkpoint (zip or legacy format; a bare state_dict
// or one wrapped under state_dict/model/net/model_state_dict) through the safe reader of
// torch_file.h, maps PyTorch naming variants onto nad's model (`module.` prefixes, `fc` for
// `linear`) and loads it. Any missing, unexpected or wrongly shaped weight is a UserError that
// lists the keys, unless options.allow_partial.
LoadedModel load_checkpoint(const std::filesystem::path& file, const LoadOptions& options);
LoadedModel load_checkpoint(const std::filesystem::path& file, torch::Device device = torch::kCPU);

using NamedTensors = models::StateDict;

// Loads `state` (name -> tensor) into `model`, checking names and shapes; `source` names the
// file in error messages. A BatchNorm's num_batches_tracked may be absent (older PyTorch).
// With allow_partial, mismatches are skipped and described in the returned warnings.
std::vector<std::string> load_state_dict(const models::Classifier& model, const NamedTensors& state,
                                         const std::string& source, bool allow_partial = false);

// Renames a PyTorch state_dict's keys to `model`'s: strips DataParallel's `module.` prefix and
// maps a classifier called `fc` onto `linear` (or back) when only the other exists.
NamedTensors map_names(const NamedTensors& state, const models::Classifier& model);

// The architecture a state_dict was saved from (the registry's recognisers), or "" when the
// names fit none of them.
std::string guess_arch(const NamedTensors& state);

// The model's parameters and buffers under their PyTorch names, as a state_dict.
NamedTensors model_state(const models::Classifier& model);

// "sha256:<hex>" of the state_dict: each entry's name, dtype, shape and bytes, in order. It
// identifies the weights, not the file: the same weights saved as nad's model.pt or exported
// for PyTorch have one fingerprint.
std::string weights_fingerprint(const models::Classifier& model);

}  // namespace nad::models
