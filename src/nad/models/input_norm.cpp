#include "nad/models/input_norm.h"

#include <cmath>
#include <map>
#include <sstream>

#include "nad/util/error.h"

namespace nad::models {

namespace {

struct Preset {
  std::vector<double> mean, std;
};

// BackdoorBench, utils/aggregate_block/dataset_and_transform_generate.py,
// get_dataset_normalization; gtsrb is not normalised there. imagenet: torchvision's weights.
const std::map<std::string, Preset>& presets() {
  static const std::map<std::string, Preset> table = {
      {"cifar10", {{0.4914, 0.4822, 0.4465}, {0.247, 0.243, 0.261}}},
      {"cifar100", {{0.5071, 0.4865, 0.4409}, {0.2673, 0.2564, 0.2762}}},
      {"tiny", {{0.4802, 0.4481, 0.3975}, {0.2302, 0.2265, 0.2262}}},
      {"mnist", {{0.5}, {0.5}}},
      {"imagenet", {{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}}},
  };
  return table;
}

std::string join(const std::vector<double>& values) {
  std::ostringstream out;
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  return out.str();
}

std::vector<double> parse_numbers(const std::string& text, const std::string& option,
                                  const std::string& whole) {
  std::vector<double> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !std::isfinite(value)) {
      throw UserError(option + " '" + whole + "': '" + item + "' is not a number");
    }
    values.push_back(value);
  }
  return values;
}

}  // namespace

std::string InputNorm::describe() const {
  if (identity()) return "none";
  return name + " (mean " + join(mean) + " / std " + join(std) + ")";
}

nlohmann::json InputNorm::to_json() const { return {{"name", name}, {"mean", mean}, {"std", std}}; }

const std::vector<std::string>& input_norm_presets() {
  static const std::vector<std::string> names = {"none",  "cifar10", "cifar100", "tiny",
                                                 "mnist", "gtsrb",   "imagenet"};
  return names;
}

InputNorm input_norm_from_values(const std::string& name, const std::vector<double>& mean,
                                 const std::vector<double>& std, const std::string& where) {
  if (mean.size() != std.size()) {
    throw UserError(where + ": the input normalisation has " + std::to_string(mean.size()) +
                    " means but " + std::to_string(std.size()) + " standard deviations");
  }
  for (double s : std) {
    if (!(s > 0) || !std::isfinite(s)) {
      throw UserError(where + ": input normalisation standard deviations must be > 0");
    }
  }
  for (double m : mean) {
    if (!std::isfinite(m)) throw UserError(where + ": input normalisation means must be finite");
  }
  InputNorm norm;
  norm.mean = mean;
  norm.std = std;
  norm.name = mean.empty() ? "none" : name;
  return norm;
}

InputNorm parse_input_norm(const std::string& text, const std::string& option) {
  if (text == "none" || text == "gtsrb") return {};
  if (auto it = presets().find(text); it != presets().end()) {
    return input_norm_from_values(text, it->second.mean, it->second.std, option);
  }
  const size_t slash = text.find('/');
  if (slash == std::string::npos) {
    std::string names;
    for (const auto& name : input_norm_presets()) names += (names.empty() ? "" : ", ") + name;
    throw UserError(option + " '" + text + "': expected one of " + names +
                    ", or per-channel values M1,M2,M3/S1,S2,S3");
  }
  const std::vector<double> mean = parse_numbers(text.substr(0, slash), option, text);
  const std::vector<double> std = parse_numbers(text.substr(slash + 1), option, text);
  if (mean.empty()) throw UserError(option + " '" + text + "': no mean given");
  return input_norm_from_values("custom", mean, std, option + " '" + text + "'");
}

std::optional<InputNorm> backdoorbench_input_norm(const std::string& dataset) {
  // Normalize([0, 0, 0], [1, 1, 1]) there, the identity.
  if (dataset == "gtsrb" || dataset == "celeba") return InputNorm{};
  // BackdoorBench takes CIFAR-10's values for cityscapes.
  const std::string preset = dataset == "cityscapes" ? "cifar10" : dataset;
  if (auto it = presets().find(preset); it != presets().end()) {
    return input_norm_from_values(preset, it->second.mean, it->second.std, dataset);
  }
  return std::nullopt;
}

}  // namespace nad::models
