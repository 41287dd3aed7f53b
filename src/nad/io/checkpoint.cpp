#include "nad/io/checkpoint.h"

#include <cmath>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/sha256.h"

namespace nad::io {

void save_checkpoint(const std::filesystem::path& file, const models::Classifier& model,
                     const models::ModelSpec& spec) {
  c10::Dict<std::string, at::Tensor> state;
  for (const auto& item : model->named_parameters()) {
    state.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
  }
  for (const auto& item : model->named_buffers()) {
    state.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
  }
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("arch", spec.arch);
  top.insert("num_classes", spec.num_classes);
  top.insert("input_shape", c10::List<int64_t>({spec.in_channels, spec.height, spec.width}));
  top.insert("state_dict", state);
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(top));
  write_file_atomic(file, bytes.data(), bytes.size());
}

namespace {

std::string join_keys(const std::vector<std::string>& keys) {
  std::ostringstream out;
  const size_t shown = std::min<size_t>(keys.size(), 12);
  for (size_t i = 0; i < shown; ++i) out << (i ? ", " : "") << keys[i];
  if (keys.size() > shown) out << ", ... (" << keys.size() << " in all)";
  return out.str();
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const torch::Tensor* find(const NamedTensors& state, const std::string& name) {
  for (const auto& [key, tensor] : state) {
    if (key == name) return &tensor;
  }
  return nullptr;
}

bool known_arch(const std::string& arch) {
  static const std::regex wrn("wrn-\\d+-\\d+");
  return arch == "preact-resnet18" || arch == "resnet18" || arch == "mnist-cnn" ||
         std::regex_match(arch, wrn);
}

}  // namespace

NamedTensors model_state(const models::Classifier& model) {
  NamedTensors state;
  for (const auto& item : model->named_parameters()) state.emplace_back(item.key(), item.value());
  for (const auto& item : model->named_buffers()) state.emplace_back(item.key(), item.value());
  return state;
}

std::string weights_fingerprint(const models::Classifier& model) {
  Sha256 hash;
  for (const auto& [name, tensor] : model_state(model)) {
    const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    std::ostringstream header;
    header << name << '\0' << t.scalar_type() << '\0' << t.sizes() << '\0';
    hash.update(header.str());
    hash.update(t.data_ptr(), t.numel() * t.element_size());
  }
  return "sha256:" + hash.hex_digest();
}

std::vector<std::string> load_state_dict(const models::Classifier& model, const NamedTensors& state,
                                         const std::string& source, bool allow_partial) {
  std::map<std::string, torch::Tensor> given(state.begin(), state.end());
  std::map<std::string, torch::Tensor> wanted;
  for (const auto& [name, tensor] : model_state(model)) wanted[name] = tensor;

  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, tensor] : wanted) {
    auto it = given.find(name);
    if (it == given.end()) {
      // PyTorch before 0.4.1 saved no num_batches_tracked; it only matters for momentum=None.
      if (!ends_with(name, ".num_batches_tracked")) missing.push_back(name);
    } else if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream m;
      m << name << " (file " << it->second.sizes() << ", model " << tensor.sizes() << ")";
      mismatched.push_back(m.str());
      given.erase(it);
    }
  }
  for (const auto& [name, tensor] : given) {
    if (!wanted.count(name)) unexpected.push_back(name);
  }
  std::vector<std::string> warnings;
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string message = "'" + source + "' does not match the model:";
    if (!missing.empty()) message += " missing keys: " + join_keys(missing) + ";";
    if (!unexpected.empty()) message += " unexpected keys: " + join_keys(unexpected) + ";";
    if (!mismatched.empty()) message += " wrong shapes: " + join_keys(mismatched) + ";";
    message.pop_back();
    if (!allow_partial) throw UserError(message + " (--allow-partial loads what matches)");
    warnings.push_back(message + "; --allow-partial: loaded the rest, missing weights keep " +
                       "their initial values");
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : wanted) {
    auto it = given.find(name);
    if (it != given.end()) tensor.copy_(it->second);
  }
  return warnings;
}

NamedTensors map_names(const NamedTensors& state, const models::Classifier& model) {
  std::set<std::string> wanted;
  for (const auto& [name, tensor] : model_state(model)) wanted.insert(name);
  NamedTensors out;
  for (const auto& [name, tensor] : state) {
    out.emplace_back(name.rfind("module.", 0) == 0 ? name.substr(7) : name, tensor);
  }
  auto has_prefix = [](const auto& names, const std::string& prefix) {
    for (const auto& name : names) {
      if (name.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  std::vector<std::string> given;
  for (const auto& [name, tensor] : out) given.push_back(name);
  const std::pair<const char*, const char*> renames[] = {{"fc.", "linear."}, {"linear.", "fc."}};
  for (const auto& [from, to] : renames) {
    if (has_prefix(wanted, to) && !has_prefix(wanted, from) && has_prefix(given, from) &&
        !has_prefix(given, to)) {
      for (auto& [name, tensor] : out) {
        if (name.rfind(from, 0) == 0) name = to + name.substr(std::strlen(from));
      }
    }
  }
  return out;
}

std::string guess_arch(const NamedTensors& state) {
  auto has = [&](const std::string& name) { return find(state, name) != nullptr; };
  if (const torch::Tensor* conv = find(state, "block1.layer.0.conv2.weight")) {
    int64_t blocks = 0;
    while (has("block1.layer." + std::to_string(blocks) + ".conv1.weight")) ++blocks;
    const int64_t width = conv->dim() == 4 ? conv->size(0) / 16 : 0;
    if (width < 1) return "";
    return "wrn-" + std::to_string(6 * blocks + 4) + "-" + std::to_string(width);
  }
  if (has("layer4.1.conv2.weight")) return has("bn1.weight") ? "resnet18" : "preact-resnet18";
  if (has("conv1.weight") && has("conv2.weight") && has("fc1.weight") && has("fc2.weight")) {
    return "mnist-cnn";
  }
  return "";
}

LoadedModel load_checkpoint(const std::filesystem::path& file, const LoadOptions& options) {
  const std::string where = file.string();
  TorchStateDict file_state = read_torch_state_dict(file);
  LoadedModel out;
  if (!file_state.skipped_globals.empty()) {
    std::string names;
    for (const auto& name : file_state.skipped_globals) names += (names.empty() ? "" : ", ") + name;
    out.warnings.push_back("'" + where + "' also holds objects nad does not load (" + names +
                           "); skipped them, nothing in the file was run");
  }
  // Names as nad's models use them (without `module.`) to read the shapes from.
  NamedTensors state;
  for (const auto& [name, tensor] : file_state.tensors) {
    state.emplace_back(name.rfind("module.", 0) == 0 ? name.substr(7) : name, tensor);
  }

  // The command line wins; then what the file says, when it is one of nad's names (other
  // checkpoints' "arch" entries, such as torchvision's "resnet50", name other models); then
  // the weights.
  models::ModelSpec& spec = out.spec;
  const bool file_arch = options.arch.empty() && file_state.arch && known_arch(*file_state.arch);
  spec.arch = !options.arch.empty() ? options.arch
              : file_arch           ? *file_state.arch
                                    : guess_arch(state);
  if (spec.arch.empty()) {
    throw UserError("'" + where + "' does not say its architecture and its weight names fit " +
                    "none of nad's: give --arch");
  }
  // The classifier's rows, when neither the command line nor the file gives the class count.
  int64_t rows = 0;
  for (const char* head : {"fc.weight", "linear.weight", "fc2.weight"}) {
    if (const torch::Tensor* w = find(state, head); w && w->dim() == 2 && rows == 0) {
      rows = w->size(0);
    }
  }
  spec.num_classes =
      options.num_classes > 0 ? options.num_classes : file_state.num_classes.value_or(rows);
  if (spec.num_classes <= 0) {
    throw UserError("'" + where + "' does not say its number of classes: give --num-classes");
  }
  // Input shape: the file's (nad's model.pt), else the caller's (the dataset), else C from the
  // first convolution and 32 x 32 (mnist-cnn: the side its fc1 reads).
  std::vector<int64_t> shape = options.input_shape;
  if (file_state.input_shape && file_state.input_shape->size() == 3)
    shape = *file_state.input_shape;
  if (shape.empty()) {
    const torch::Tensor* conv = find(state, "conv1.weight");
    shape = {conv && conv->dim() == 4 ? conv->size(1) : 3, 32, 32};
    const torch::Tensor* fc1 = find(state, "fc1.weight");
    if (spec.arch == "mnist-cnn" && fc1 && fc1->dim() == 2) {
      // fc1 reads 64 x (H/4) x (W/4); assume square images.
      const auto side = static_cast<int64_t>(std::lround(std::sqrt(fc1->size(1) / 64.0)));
      shape[1] = shape[2] = 4 * side;
    }
  }
  if (shape.size() != 3) throw UserError("'" + where + "': the input shape must be C,H,W");
  spec.in_channels = shape[0];
  spec.height = shape[1];
  spec.width = shape[2];

  const char* how = file_arch               ? "as the file says"
                    : !options.arch.empty() ? "from --arch"
                                            : "guessed from the weight names";
  out.description =
      spec.arch + " (" + how + "), " + std::to_string(spec.num_classes) + " classes; " +
      (file_state.format == TorchFormat::kZip ? "zip" : "legacy torch.save") + " format, " +
      (file_state.container.empty() ? std::string("bare state_dict")
                                    : "weights under '" + file_state.container + "'");
  out.model = models::create_model(spec);
  const std::vector<std::string> partial = load_state_dict(
      out.model, map_names(file_state.tensors, out.model), where, options.allow_partial);
  out.warnings.insert(out.warnings.end(), partial.begin(), partial.end());
  out.model->to(options.device);
  return out;
}

LoadedModel load_checkpoint(const std::filesystem::path& file, torch::Device device) {
  LoadOptions options;
  options.device = device;
  return load_checkpoint(file, options);
}

}  // namespace nad::io
