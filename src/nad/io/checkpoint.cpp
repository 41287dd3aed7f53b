#include "nad/io/checkpoint.h"

#include <map>
#include <sstream>

#include "nad/util/error.h"
#include "nad/util/files.h"

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
}  // namespace

void load_state_dict(const models::Classifier& model,
                     const std::vector<std::pair<std::string, torch::Tensor>>& state,
                     const std::string& source) {
  std::map<std::string, torch::Tensor> given(state.begin(), state.end());
  std::map<std::string, torch::Tensor> wanted;
  for (const auto& item : model->named_parameters()) wanted[item.key()] = item.value();
  for (const auto& item : model->named_buffers()) wanted[item.key()] = item.value();

  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, tensor] : wanted) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream m;
      m << name << " (file " << it->second.sizes() << ", model " << tensor.sizes() << ")";
      mismatched.push_back(m.str());
    }
  }
  for (const auto& [name, tensor] : given) {
    if (!wanted.count(name)) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string message = "'" + source + "' does not match the model:";
    if (!missing.empty()) message += " missing keys: " + join_keys(missing) + ";";
    if (!unexpected.empty()) message += " unexpected keys: " + join_keys(unexpected) + ";";
    if (!mismatched.empty()) message += " wrong shapes: " + join_keys(mismatched) + ";";
    message.pop_back();
    throw UserError(message);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : wanted) tensor.copy_(given[name]);
}

LoadedModel load_checkpoint(const std::filesystem::path& file, torch::Device device) {
  const std::vector<unsigned char> raw = read_file_bytes(file);
  const std::string where = file.string();
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(raw.begin(), raw.end()));
  } catch (const c10::Error& e) {
    throw UserError("'" + where + "' is not a readable checkpoint (" +
                    std::string(e.what_without_backtrace()).substr(0, 200) + ")");
  }
  if (!value.isGenericDict()) throw UserError("'" + where + "' does not hold a dict");
  const auto top = value.toGenericDict();
  auto field = [&](const char* key) {
    if (!top.contains(key)) throw UserError("'" + where + "' has no '" + key + "' entry");
    return top.at(key);
  };
  LoadedModel out;
  const c10::IValue arch = field("arch"), classes = field("num_classes"),
                    shape = field("input_shape");
  if (!arch.isString() || !classes.isInt() || !shape.isList()) {
    throw UserError("'" + where + "' has malformed arch/num_classes/input_shape entries");
  }
  out.spec.arch = arch.toStringRef();
  out.spec.num_classes = classes.toInt();
  const auto dims = shape.toList();
  if (dims.size() != 3) throw UserError("'" + where + "': input_shape must be [C, H, W]");
  out.spec.in_channels = dims.get(0).toInt();
  out.spec.height = dims.get(1).toInt();
  out.spec.width = dims.get(2).toInt();

  const c10::IValue state_value = field("state_dict");
  if (!state_value.isGenericDict()) throw UserError("'" + where + "': state_dict is not a dict");
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (const auto& item : state_value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor()) {
      throw UserError("'" + where + "': state_dict must map names to tensors");
    }
    state.emplace_back(item.key().toStringRef(), item.value().toTensor());
  }
  out.model = models::create_model(out.spec);
  load_state_dict(out.model, state, where);
  out.model->to(device);
  return out;
}

}  // namespace nad::io
