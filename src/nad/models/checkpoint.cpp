#include "nad/models/checkpoint.h"

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "nad/io/torchscript_archive.h"
#include "nad/io/zip_archive.h"
#include "nad/models/torchscript.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/sha256.h"

namespace nad::models {

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
  const models::InputNorm& norm = model->input_norm();
  c10::impl::GenericDict norm_entry(c10::StringType::get(), c10::AnyType::get());
  norm_entry.insert("name", norm.name);
  norm_entry.insert("mean", c10::List<double>(norm.mean));
  norm_entry.insert("std", c10::List<double>(norm.std));
  top.insert("input_norm", norm_entry);
  top.insert("state_dict", state);
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(top));
  write_file_atomic(file, bytes.data(), bytes.size());
  // A TorchScript model's own format beside it: the user's module with these weights.
  if (models::is_torchscript_arch(spec.arch)) {
    std::filesystem::path script = file;
    models::save_torchscript(model, spec.arch, script.replace_extension(".ts"));
  }
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
  return models::find_tensor(state, name);
}

bool known_arch(const std::string& arch) { return models::find_family(arch) != nullptr; }

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
    if (!allow_partial)
      throw UserError(message + " (" + flag::allow_partial + " loads what matches)");
    warnings.push_back(message + "; " + flag::allow_partial +
                       ": loaded the rest, missing weights keep " + "their initial values");
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

std::string guess_arch(const NamedTensors& state) { return models::recognise_arch(state); }

namespace {

// The first line of a LibTorch error, without its C++ backtrace.
std::string first_line(const c10::Error& e) {
  const std::string text = e.what_without_backtrace();
  return text.substr(0, text.find('\n'));
}

// A TorchScript archive: checked (operators, __setstate__) before LibTorch compiles it, then
// loaded, its groups proposed and its class count read from one forward pass on the data's
// input shape.
LoadedModel load_torchscript(const std::filesystem::path& file,
                             const std::vector<unsigned char>& bytes, const LoadOptions& options) {
  const std::string where = file.string();
  const io::TorchScriptCheck check = io::check_torchscript_archive(
      bytes.data(), bytes.size(), where, io::default_operator_policy());
  if (options.input_shape.size() != 3) {
    throw UserError("'" + where + "' is a TorchScript model, which does not say its input shape");
  }
  LoadedModel out;
  models::ModelSpec& spec = out.spec;
  spec.arch = models::register_torchscript(std::string(bytes.begin(), bytes.end()), where);
  spec.in_channels = options.input_shape[0];
  spec.height = options.input_shape[1];
  spec.width = options.input_shape[2];
  if (options.input_norm) {
    spec.input_norm = *options.input_norm;
    out.input_norm_source = flag::input_norm;
  } else {
    out.input_norm_source = "none given";
  }
  if (!options.arch.empty()) {
    out.warnings.push_back(flag::arch + " " + options.arch + " ignored: '" + where +
                           "' is a TorchScript model, which brings its own architecture");
  }
  const std::string shape = "1x" + std::to_string(spec.in_channels) + "x" +
                            std::to_string(spec.height) + "x" + std::to_string(spec.width);
  try {
    out.model = models::create_model(spec);
    out.model->eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor logits =
        out.model->forward(torch::zeros({1, spec.in_channels, spec.height, spec.width})).logits;
    if (logits.dim() != 2) {
      throw UserError("'" + where + "': its forward returns a " + std::to_string(logits.dim()) +
                      "-D tensor on " + shape + " inputs, not N x classes logits");
    }
    spec.num_classes = logits.size(1);
  } catch (const c10::Error& e) {
    throw UserError("'" + where + "': the TorchScript model does not run on " + shape +
                    " inputs (the data's shape): " + first_line(e));
  }
  if (options.num_classes > 0 && options.num_classes != spec.num_classes) {
    throw UserError("'" + where + "' gives " + std::to_string(spec.num_classes) + " logits, not " +
                    flag::num_classes + " " + std::to_string(options.num_classes));
  }
  // The proposed groups, kept: models built from this spec (clones, the NAD teacher, each rate
  // the search tries) take them instead of probing the module again.
  spec.groups = out.model->group_names();
  out.model->train();
  out.model->to(options.device);
  std::string groups;
  for (const auto& name : out.model->group_names()) groups += (groups.empty() ? "" : ", ") + name;
  out.description = "TorchScript model (" + std::to_string(check.operators.size()) +
                    " operators in " + std::to_string(check.code_files.size()) +
                    " code files, all allowed), " + std::to_string(spec.num_classes) +
                    " classes; attention groups " + (groups.empty() ? "none" : groups) + " (" +
                    flag::groups + " names others); input normalisation " +
                    spec.input_norm.describe() + " (" + out.input_norm_source + ")";
  return out;
}

}  // namespace

LoadedModel load_checkpoint(const std::filesystem::path& file, const LoadOptions& options) {
  const std::string where = file.string();
  // Read once: a TorchScript archive is recognised by its contents, not its name.
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  if (io::zip::looks_like_zip(bytes.data(), bytes.size()) &&
      io::is_torchscript_archive(io::zip::Reader(bytes.data(), bytes.size(), where, true))) {
    return load_torchscript(file, bytes, options);
  }
  io::TorchStateDict file_state = io::parse_torch_state_dict(bytes.data(), bytes.size(), where);
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
  // checkpoints' "arch" entries, such as torchvision's "resnet50", name other models); then a
  // BackdoorBench record's model_name; then the weights.
  models::ModelSpec& spec = out.spec;
  const bool file_arch = options.arch.empty() && file_state.arch && known_arch(*file_state.arch);
  const bool record_arch = options.arch.empty() && !file_arch && file_state.record_model_name;
  if (record_arch) {
    // BackdoorBench's names first: its "resnet18" is torchvision's, not nad's CIFAR one.
    const std::string& name = *file_state.record_model_name;
    spec.arch = models::arch_from_foreign_name(name);
    if (spec.arch.empty() && known_arch(name)) spec.arch = name;
    if (spec.arch.empty()) {
      std::string names;
      for (const auto& name : models::foreign_arch_names())
        names += (names.empty() ? "" : ", ") + name;
      throw UserError("'" + where + "' is a BackdoorBench record of model_name '" +
                      *file_state.record_model_name + "', which nad does not know (known: " +
                      names + "); give " + flag::arch + " to load its weights into one of nad's");
    }
  } else {
    spec.arch = !options.arch.empty() ? options.arch
                : file_arch           ? *file_state.arch
                                      : guess_arch(state);
  }
  if (spec.arch.empty()) {
    throw UserError("'" + where + "' does not say its architecture and its weight names fit " +
                    "none of nad's: give " + flag::arch);
  }
  // The classifier's rows, when neither the command line nor the file gives the class count:
  // the family names its classifier (`fc.` stands for `linear.` and back, as in map_names). For
  // weights of another architecture than --arch, their own classifier's, so that loading lists
  // the keys that do not match.
  const models::ArchFamily* family = models::find_family(spec.arch);
  if (!family) models::check_arch(spec.arch);  // the unknown-architecture error
  auto classifier_rows = [&](const std::string& arch) -> int64_t {
    const models::ArchFamily* f = models::find_family(arch);
    if (!f || !f->classifier_weight) return 0;
    const std::string head = f->classifier_weight(arch);
    const torch::Tensor* w = find(state, head);
    if (!w && head.rfind("linear.", 0) == 0) w = find(state, "fc." + head.substr(7));
    if (!w && head.rfind("fc.", 0) == 0) w = find(state, "linear." + head.substr(3));
    return w && w->dim() == 2 ? w->size(0) : 0;
  };
  int64_t rows = classifier_rows(spec.arch);
  if (rows == 0) rows = classifier_rows(guess_arch(state));
  spec.num_classes =
      options.num_classes > 0 ? options.num_classes : file_state.num_classes.value_or(rows);
  if (spec.num_classes <= 0) {
    throw UserError("'" + where + "' does not say its number of classes: give " +
                    flag::num_classes);
  }
  // Input shape: the file's (nad's model.pt), else the caller's (the dataset), else C from the
  // first convolution and 32 x 32 (mnist-cnn: the side its fc1 reads).
  std::vector<int64_t> shape = options.input_shape;
  if (file_state.input_shape && file_state.input_shape->size() == 3)
    shape = *file_state.input_shape;
  if (shape.empty()) {
    const torch::Tensor* conv =
        family->input_weight ? find(state, family->input_weight(spec.arch)) : nullptr;
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

  // Input normalisation: --input-norm, else nad's record of it, else a BackdoorBench record's
  // dataset, else none.
  if (options.input_norm) {
    spec.input_norm = *options.input_norm;
    out.input_norm_source = flag::input_norm;
  } else if (file_state.input_norm_mean && file_state.input_norm_std) {
    spec.input_norm = models::input_norm_from_values(file_state.input_norm_name.value_or("custom"),
                                                     *file_state.input_norm_mean,
                                                     *file_state.input_norm_std, "'" + where + "'");
    out.input_norm_source = "the file";
  } else if (file_state.record_dataset) {
    const auto norm = models::backdoorbench_input_norm(*file_state.record_dataset);
    if (!norm) {
      throw UserError("'" + where + "' is a BackdoorBench record of dataset '" +
                      *file_state.record_dataset +
                      "', whose input normalisation nad does not know: give " + flag::input_norm);
    }
    spec.input_norm = *norm;
    out.input_norm_source =
        "BackdoorBench record (clean_data '" + *file_state.record_dataset + "')";
  } else {
    out.input_norm_source = "none given";
  }

  const std::string how = file_arch               ? "as the file says"
                          : record_arch           ? "from the BackdoorBench record's model_name"
                          : !options.arch.empty() ? "from " + flag::arch
                                                  : "guessed from the weight names";
  out.description =
      spec.arch + " (" + how + "), " + std::to_string(spec.num_classes) + " classes; " +
      (file_state.format == io::TorchFormat::kZip ? "zip" : "legacy torch.save") + " format, " +
      (file_state.container.empty() ? std::string("bare state_dict")
                                    : "weights under '" + file_state.container + "'") +
      "; input normalisation " + spec.input_norm.describe() + " (" + out.input_norm_source + ")";
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

}  // namespace nad::models
