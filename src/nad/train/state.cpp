#include "nad/train/state.h"

#include <map>
#include <mutex>

#include "nad/io/torch_file.h"
#include "nad/train/trainer.h"
#include "nad/util/error.h"

namespace nad::train {

namespace fs = std::filesystem;

namespace {

constexpr int kStateVersion = 1;

torch::Tensor bytes_tensor(const std::string& text) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(t.data_ptr<uint8_t>(), text.data(), text.size());
  return t;
}

std::string tensor_text(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().to(torch::kCPU);
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()),
                     static_cast<size_t>(c.numel()));
}

std::optional<double> optional_number(const nlohmann::json& j, const char* key) {
  if (j.contains(key) && j[key].is_number()) return j[key].get<double>();
  return std::nullopt;
}

}  // namespace

nlohmann::json record_to_json(const EpochRecord& r) {
  return {{"phase", r.phase},    {"epoch", r.epoch},         {"lr", r.lr},
          {"loss", r.loss},      {"train_acc", r.train_acc}, {"metrics", r.metrics.to_json()},
          {"seconds", r.seconds}};
}

EpochRecord record_from_json(const nlohmann::json& j) {
  EpochRecord r;
  r.phase = j.at("phase").get<std::string>();
  r.epoch = j.at("epoch").get<int>();
  r.lr = j.at("lr").get<double>();
  r.loss = j.at("loss").get<double>();
  r.train_acc = j.at("train_acc").get<double>();
  const nlohmann::json& m = j.at("metrics");
  r.metrics.clean_acc = m.at("clean_acc").get<double>();
  r.metrics.asr = optional_number(m, "asr");
  r.metrics.robust_acc = optional_number(m, "robust_acc");
  r.seconds = j.at("seconds").get<double>();
  return r;
}

fs::path StateStore::file(const std::string& key) const {
  std::string name;
  for (char c : key) {
    const bool plain =
        std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
    name += plain ? c : '_';
  }
  return dir_ / (name + ".state");
}

void StateStore::save(const std::string& key, const LoopState& state) const {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  nlohmann::json meta = {{"version", kStateVersion},
                         {"key", key},
                         {"epoch", state.epoch},
                         {"step", state.step},
                         {"complete", state.complete},
                         {"loss_sum", state.loss_sum},
                         {"correct", state.correct},
                         {"seen", state.seen},
                         {"weights", state.weights.size()},
                         {"extra", state.extra}};
  nlohmann::json records = nlohmann::json::array();
  for (const auto& r : state.records) records.push_back(record_to_json(r));
  meta["records"] = records;
  nlohmann::json momentum = nlohmann::json::array();
  for (size_t i = 0; i < state.weights.size(); ++i) {
    tensors.emplace_back("weight." + std::to_string(i), state.weights[i].detach().cpu());
  }
  for (size_t i = 0; i < state.momentum.size(); ++i) {
    if (!state.momentum[i].defined()) continue;
    momentum.push_back(i);
    tensors.emplace_back("momentum." + std::to_string(i), state.momentum[i].detach().cpu());
  }
  meta["momentum"] = momentum;
  meta["momentum_count"] = state.momentum.size();
  if (state.generator.defined()) tensors.emplace_back("generator", state.generator.cpu());
  if (state.global_generator.defined())
    tensors.emplace_back("global_generator", state.global_generator.cpu());
  if (state.order.defined()) tensors.emplace_back("order", state.order.cpu());
  nlohmann::json extra_names = nlohmann::json::array();
  for (const auto& [name, t] : state.extra_tensors) {
    extra_names.push_back(name);
    tensors.emplace_back("extra." + name, t.detach().cpu());
  }
  meta["extra_tensors"] = extra_names;
  tensors.emplace_back("meta", bytes_tensor(meta.dump()));
  io::write_torch_state_dict(file(key), tensors, io::TorchFormat::kZip);
}

std::optional<LoopState> StateStore::load(const std::string& key) const {
  const fs::path path = file(key);
  if (!fs::exists(path)) return std::nullopt;
  const io::TorchStateDict dict = io::read_torch_state_dict(path);
  std::map<std::string, torch::Tensor> named(dict.tensors.begin(), dict.tensors.end());
  auto bad = [&](const std::string& what) {
    return UserError("state file '" + path.string() + "': " + what +
                     "; it is damaged or from another version of nad (delete it to redo that "
                     "part of the run)");
  };
  auto tensor = [&](const std::string& name) {
    auto it = named.find(name);
    if (it == named.end()) throw bad("no tensor '" + name + "'");
    return it->second;
  };
  nlohmann::json meta;
  try {
    const torch::Tensor raw = tensor("meta");
    if (raw.scalar_type() != torch::kUInt8 || raw.dim() != 1) throw bad("'meta' is not bytes");
    meta = nlohmann::json::parse(tensor_text(raw));
    if (meta.value("version", 0) != kStateVersion) throw bad("unknown state version");
    if (meta.value("key", std::string()) != key) throw bad("it belongs to another loop");
    LoopState state;
    state.epoch = meta.at("epoch").get<int>();
    state.step = meta.at("step").get<int64_t>();
    state.complete = meta.at("complete").get<bool>();
    state.loss_sum = meta.at("loss_sum").get<double>();
    state.correct = meta.at("correct").get<int64_t>();
    state.seen = meta.at("seen").get<int64_t>();
    if (state.epoch < 0 || state.step < 0) throw bad("negative epoch or step");
    const size_t weights = meta.at("weights").get<size_t>();
    if (weights > named.size()) throw bad("more weights than tensors");
    for (size_t i = 0; i < weights; ++i)
      state.weights.push_back(tensor("weight." + std::to_string(i)));
    const size_t momentum_count = meta.at("momentum_count").get<size_t>();
    if (momentum_count > named.size() + weights) throw bad("bad momentum count");
    state.momentum.resize(momentum_count);
    for (const auto& i : meta.at("momentum")) {
      const size_t index = i.get<size_t>();
      if (index >= momentum_count) throw bad("momentum index out of range");
      state.momentum[index] = tensor("momentum." + std::to_string(index));
    }
    if (named.count("generator")) state.generator = named["generator"];
    if (named.count("global_generator")) state.global_generator = named["global_generator"];
    if (named.count("order")) state.order = named["order"];
    for (const auto& r : meta.at("records")) state.records.push_back(record_from_json(r));
    state.extra = meta.at("extra");
    for (const auto& name : meta.at("extra_tensors")) {
      const std::string n = name.get<std::string>();
      state.extra_tensors.emplace_back(n, tensor("extra." + n));
    }
    return state;
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("bad metadata (") + e.what() + ")");
  }
}

namespace {

torch::Tensor generator_state(at::Generator& generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_generator_state(at::Generator& generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace

LoopState capture_loop_state(const LoopPosition& at, const std::vector<torch::Tensor>& trained,
                             torch::optim::SGD& optimizer,
                             const std::vector<torch::Tensor>& parameters, at::Generator& generator,
                             const std::vector<EpochRecord>& records) {
  LoopState state;
  state.epoch = at.epoch;
  state.step = at.step;
  state.complete = at.complete;
  if (at.step > 0) state.order = at.order;
  state.loss_sum = at.loss_sum;
  state.correct = at.correct;
  state.seen = at.seen;
  state.weights = cpu_copies(trained);
  state.momentum = sgd_momentum(optimizer, parameters);
  state.generator = generator_state(generator);
  at::Generator global = at::detail::getDefaultCPUGenerator();
  state.global_generator = generator_state(global);
  state.records = records;
  return state;
}

void restore_loop_state(const LoopState& state, const std::vector<torch::Tensor>& trained,
                        torch::optim::SGD& optimizer, const std::vector<torch::Tensor>& parameters,
                        at::Generator& generator, const std::string& source) {
  copy_into(trained, state.weights, source);
  set_sgd_momentum(optimizer, parameters, state.momentum);
  set_generator_state(generator, state.generator);
  if (state.global_generator.defined()) {
    at::Generator global = at::detail::getDefaultCPUGenerator();
    set_generator_state(global, state.global_generator);
  }
}

std::vector<torch::Tensor> cpu_copies(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors)
    out.push_back(t.detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true));
  return out;
}

void copy_into(const std::vector<torch::Tensor>& tensors, const std::vector<torch::Tensor>& saved,
               const std::string& source) {
  if (tensors.size() != saved.size()) {
    throw UserError("state file '" + source + "' holds " + std::to_string(saved.size()) +
                    " tensors, the model " + std::to_string(tensors.size()) +
                    ": it was written by another configuration");
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].sizes() != saved[i].sizes() ||
        tensors[i].scalar_type() != saved[i].scalar_type()) {
      throw UserError("state file '" + source + "': tensor " + std::to_string(i) +
                      " does not fit the model: it was written by another configuration");
    }
    tensors[i].copy_(saved[i]);
  }
}

}  // namespace nad::train
