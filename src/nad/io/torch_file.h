#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// The weights in files written by PyTorch's torch.save, read without running any of the
// file's code, and state_dicts written so that torch.load reads them.
namespace nad::io {

enum class TorchFormat {
  kZip,     // torch.save's default since PyTorch 1.6: a zip of data.pkl and data/<key>
  kLegacy,  // _use_new_zipfile_serialization=False: pickles followed by raw storages
};

// The named tensors of a checkpoint and what the file says around them.
struct TorchStateDict {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  // file order, names as stored
  TorchFormat format = TorchFormat::kZip;
  // The key the weights were found under ("state_dict", "model", "net", "model_state_dict"),
  // empty for a bare state_dict.
  std::string container;
  // Set when the file says them (nad's model.pt).
  std::optional<std::string> arch;
  std::optional<int64_t> num_classes;
  std::optional<std::vector<int64_t>> input_shape;
  // nad's model.pt: the input normalisation {"name", "mean": [...], "std": [...]}.
  std::optional<std::string> input_norm_name;
  std::optional<std::vector<double>> input_norm_mean, input_norm_std;
  // A BackdoorBench record (attack_result.pt, defense_result.pt): its `model_name` and its
  // dataset (`clean_data`), which says the normalisation its model was trained with.
  std::optional<std::string> record_model_name;
  std::optional<std::string> record_dataset;
  // Globals outside the weights that are not on the allowlist (sorted, unique): they were
  // never called and are skipped.
  std::vector<std::string> skipped_globals;
};

// Reads a torch.save file (either format): a bare state_dict, one wrapped in a dict under
// state_dict/model/net/model_state_dict (other entries ignored), or nad's model.pt. A global
// outside the allowlist inside the weights, a malformed, truncated or inconsistent file are
// UserErrors naming the file; nothing in the file is ever executed.
TorchStateDict read_torch_state_dict(const std::filesystem::path& file);
// The same on bytes in memory (`where` names them in errors).
TorchStateDict parse_torch_state_dict(const unsigned char* data, size_t size,
                                      const std::string& where);

// A state_dict as torch.save writes it: an OrderedDict of CPU tensors, protocol 2; in the zip
// format (archive/data.pkl, archive/data/<key>, archive/version) or the legacy one.
std::vector<unsigned char> encode_torch_state_dict(
    const std::vector<std::pair<std::string, torch::Tensor>>& state, TorchFormat format);
// Writes it atomically.
void write_torch_state_dict(const std::filesystem::path& file,
                            const std::vector<std::pair<std::string, torch::Tensor>>& state,
                            TorchFormat format);

}  // namespace nad::io
