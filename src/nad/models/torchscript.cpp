#include "nad/models/torchscript.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <map>
#include <mutex>
#include <optional>
#include <sstream>

#include "nad/models/torchvision_layers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/sha256.h"

namespace nad::models {

namespace {

namespace jit = torch::jit;
constexpr const char* kPrefix = "torchscript:";
constexpr const char* kGroupsMethod = "__nad_forward_groups";

struct Stored {
  std::string bytes;
  std::string source;
};
std::mutex store_mutex;
std::map<std::string, Stored>& store() {
  static std::map<std::string, Stored> archives;
  return archives;
}

const Stored& stored(const std::string& arch) {
  std::lock_guard<std::mutex> lock(store_mutex);
  const auto it = store().find(arch);
  if (it == store().end()) {
    throw UserError("'" + arch +
                    "' is a TorchScript model's name, and its archive is not loaded in this run: "
                    "load the model.ts that nad wrote beside this model.pt instead");
  }
  return it->second;
}

jit::Module load_fresh(const std::string& arch) {
  std::istringstream in(stored(arch).bytes);
  return jit::load(in, torch::kCPU);
}

// The path of the module a value holds: "" for the graph's self, "a.b" for GetAttr chains from
// it; nullopt for anything else.
std::optional<std::string> module_path(jit::Value* value, jit::Value* self) {
  std::vector<std::string> parts;
  while (value != self) {
    jit::Node* node = value->node();
    if (node->kind() != c10::prim::GetAttr) return std::nullopt;
    parts.push_back(node->s(c10::attr::name));
    value = node->input(0);
  }
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) path += (path.empty() ? "" : ".") + *it;
  return path;
}

// Calls of submodules' forward in the graph's top block, by module path, in call order.
std::vector<std::pair<std::string, jit::Node*>> forward_calls(jit::Graph& graph) {
  std::vector<std::pair<std::string, jit::Node*>> calls;
  jit::Value* self = graph.inputs()[0];
  for (jit::Node* node : graph.block()->nodes()) {
    if (node->kind() != c10::prim::CallMethod || node->s(c10::attr::name) != "forward") continue;
    if (auto path = module_path(node->input(0), self); path && !path->empty()) {
      calls.emplace_back(*path, node);
    }
  }
  return calls;
}

// Inlines a method call in place; returns the values that replace its outputs.
std::vector<jit::Value*> inline_call(jit::Node* call) {
  auto type = call->input(0)->type()->expect<c10::ClassType>();
  jit::GraphFunction& callee = jit::toGraphFunction(type->getMethod(call->s(c10::attr::name)));
  // false: the function's own graph (its optimised graph has every call inlined already).
  return jit::inlineCallTo(call, &callee, /*use_graph=*/false);
}

// forward's graph, copied, with the module's calls of its own methods inlined (torchvision's
// ResNet calls self._forward_impl, where the submodule calls are).
std::shared_ptr<jit::Graph> forward_graph(jit::Module& module) {
  std::shared_ptr<jit::Graph> graph =
      jit::toGraphFunction(module.get_method("forward").function()).graph()->copy();
  jit::Value* self = graph->inputs()[0];
  for (bool inlined = true; inlined;) {
    inlined = false;
    for (jit::Node* node : graph->block()->nodes()) {
      if (node->kind() == c10::prim::CallMethod && node->input(0) == self) {
        inline_call(node);
        inlined = true;
        break;
      }
    }
  }
  return graph;
}

// A copy of forward's graph that also returns the outputs of the submodules at `paths`.
std::shared_ptr<jit::Graph> graph_with_outputs(jit::Module& module,
                                               const std::vector<std::string>& paths) {
  std::shared_ptr<jit::Graph> graph = forward_graph(module);
  if (graph->outputs().size() != 1 || !graph->outputs()[0]->type()->cast<c10::TensorType>()) {
    throw UserError("the TorchScript model's forward must return one tensor of logits");
  }
  std::map<std::string, jit::Value*> found;
  while (found.size() < paths.size()) {
    const auto calls = forward_calls(*graph);
    std::map<std::string, int> count;
    for (const auto& [path, node] : calls) ++count[path];
    bool inlined = false;
    for (const std::string& path : paths) {
      if (found.count(path)) continue;
      if (count[path] > 1) {
        throw UserError(flag::groups + ": submodule '" + path + "' is called " +
                        std::to_string(count[path]) +
                        " times by forward; name one whose output is used once");
      }
      if (count[path] == 1) {
        for (const auto& [p, node] : calls) {
          if (p == path) found[path] = node->output();
        }
        continue;
      }
      // Inline the call of the nearest ancestor, so that the named call appears.
      for (const auto& [p, node] : calls) {
        if (path.compare(0, p.size() + 1, p + ".") != 0 || count[p] != 1) continue;
        jit::Value* replaced = node->output();
        const std::vector<jit::Value*> outputs = inline_call(node);
        for (auto& [name, value] : found) {
          if (value == replaced) value = outputs.at(0);
        }
        inlined = true;
        break;
      }
      if (inlined) break;
      throw UserError(flag::groups + ": '" + path +
                      "' is not a submodule that the TorchScript model's forward calls once");
    }
    if (!inlined && found.size() < paths.size()) break;
  }
  std::vector<jit::Value*> values = {graph->outputs()[0]};
  for (const std::string& path : paths) values.push_back(found.at(path));
  jit::WithInsertPoint guard(graph->return_node());
  jit::Value* tuple = graph->insertNode(graph->createTuple(values))->output();
  graph->eraseOutput(0);
  graph->registerOutput(tuple);
  return graph;
}

void add_method(jit::Module& module, const std::string& name, std::shared_ptr<jit::Graph> graph) {
  auto unit = module._ivalue()->compilation_unit();
  jit::Function* function =
      unit->create_function(c10::QualifiedName(*module.type()->name(), name), std::move(graph));
  module.type()->addMethod(function);
}

std::vector<torch::Tensor> run_with_outputs(jit::Module& module, const std::string& method,
                                            const torch::Tensor& inputs) {
  const c10::IValue out = module.get_method(method)({inputs});
  std::vector<torch::Tensor> tensors;
  for (const c10::IValue& element : out.toTupleRef().elements()) {
    tensors.push_back(element.isTensor() ? element.toTensor() : torch::Tensor());
  }
  return tensors;
}

}  // namespace

bool is_torchscript_arch(const std::string& arch) { return arch.rfind(kPrefix, 0) == 0; }

std::string register_torchscript(const std::string& bytes, const std::string& source) {
  const std::string arch = kPrefix + sha256_hex(bytes.data(), bytes.size()).substr(0, 16);
  std::lock_guard<std::mutex> lock(store_mutex);
  store().emplace(arch, Stored{bytes, source});
  return arch;
}

const std::string& torchscript_bytes(const std::string& arch) { return stored(arch).bytes; }
const std::string& torchscript_source(const std::string& arch) { return stored(arch).source; }

std::vector<TorchScriptStage> torchscript_stages(const std::string& arch,
                                                 const std::vector<int64_t>& input_shape) {
  jit::Module module = load_fresh(arch);
  module.eval();
  // The direct children called once; when fewer than two give maps, their children too.
  std::vector<TorchScriptStage> stages;
  for (int depth = 1; depth <= 2; ++depth) {
    std::shared_ptr<jit::Graph> graph = forward_graph(module);
    if (depth == 2) {
      for (const auto& [path, node] : forward_calls(*graph)) inline_call(node);
    }
    std::vector<std::string> paths;
    std::map<std::string, int> count;
    const auto calls = forward_calls(*graph);
    for (const auto& [path, node] : calls) ++count[path];
    for (const auto& [path, node] : calls) {
      if (count[path] == 1 && node->output()->type()->cast<c10::TensorType>()) {
        paths.push_back(path);
      }
    }
    if (paths.empty()) continue;
    const std::string method = std::string(kGroupsMethod) + "_probe" + std::to_string(depth);
    add_method(module, method, graph_with_outputs(module, paths));
    torch::NoGradGuard no_grad;
    const std::vector<torch::Tensor> outputs =
        run_with_outputs(module, method, torch::zeros(input_shape));
    std::vector<TorchScriptStage> found;
    for (size_t i = 0; i < paths.size(); ++i) {
      const torch::Tensor& out = outputs[i + 1];
      if (out.defined() && out.dim() == 4) found.push_back({paths[i], out.sizes().vec()});
    }
    int maps = 0;
    for (const auto& stage : found) maps += stage.shape[2] * stage.shape[3] > 1;
    stages = found;
    if (maps >= 2) break;
  }
  return stages;
}

TorchScriptClassifierImpl::TorchScriptClassifierImpl(torch::jit::Module module,
                                                     std::vector<std::string> groups)
    : module_(std::move(module)), groups_(std::move(groups)) {
  // nad's training loops, optimisers and checkpoints see the module's own tensors through an
  // nn::Module tree of the same names (the same tensors, not copies).
  std::function<void(torch::nn::Module&, const jit::Module&)> mirror =
      [&](torch::nn::Module& target, const jit::Module& source) {
        for (const auto& p : source.named_parameters(/*recurse=*/false)) {
          target.register_parameter(p.name, p.value, p.value.requires_grad());
        }
        for (const auto& b : source.named_buffers(/*recurse=*/false)) {
          target.register_buffer(b.name, b.value);
        }
        for (const auto& child : source.named_children()) {
          auto node = std::make_shared<torch::nn::Module>();
          mirror(*node, child.value);
          target.register_module(child.name, node);
        }
      };
  mirror(*this, module_);
  if (!groups_.empty()) add_method(module_, kGroupsMethod, graph_with_outputs(module_, groups_));
}

ModelOutput TorchScriptClassifierImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  if (groups_.empty()) {
    out.logits = module_.forward({inputs}).toTensor();
    return out;
  }
  std::vector<torch::Tensor> tensors = run_with_outputs(module_, kGroupsMethod, inputs);
  out.logits = tensors[0];
  out.features.assign(tensors.begin() + 1, tensors.end());
  return out;
}

std::vector<double> TorchScriptClassifierImpl::default_betas() const {
  return torchvision_default_betas(groups_.size());
}

std::vector<std::string> TorchScriptClassifierImpl::group_consumers(size_t) const {
  throw UserError(
      "TrojanNN's trigger needs the layers that read a group, which nad does not "
      "know for a TorchScript model");
}

void TorchScriptClassifierImpl::train(bool on) {
  torch::nn::Module::train(on);
  module_.train(on);
}

ArchFamily torchscript_family() {
  ArchFamily family;
  family.accepts = [](const std::string& arch) { return is_torchscript_arch(arch); };
  family.build = [](const ModelSpec& spec) -> Classifier {
    std::vector<std::string> groups = spec.groups;
    if (groups.empty()) {
      // The three deepest candidate stages with maps larger than 1x1.
      for (const auto& stage :
           torchscript_stages(spec.arch, {1, spec.in_channels, spec.height, spec.width})) {
        if (stage.shape[2] * stage.shape[3] > 1) groups.push_back(stage.path);
      }
      if (groups.size() > 3) groups.erase(groups.begin(), groups.end() - 3);
    }
    return std::make_shared<TorchScriptClassifierImpl>(load_fresh(spec.arch), groups);
  };
  family.recognise = [](const StateDict&) { return std::string(); };
  family.classifier_weight = [](const std::string&) { return std::string(); };
  family.input_weight = [](const std::string&) { return std::string(); };
  bind_model_methods<TorchScriptClassifierImpl>(family);
  return family;
}

void save_torchscript(const Classifier& model, const std::string& arch,
                      const std::filesystem::path& file) {
  jit::Module fresh = load_fresh(arch);
  torch::NoGradGuard no_grad;
  const auto parameters = model->named_parameters();
  const auto buffers = model->named_buffers();
  for (const auto& p : fresh.named_parameters()) {
    p.value.copy_(parameters[p.name].detach().to(torch::kCPU));
  }
  for (const auto& b : fresh.named_buffers()) {
    b.value.copy_(buffers[b.name].detach().to(torch::kCPU));
  }
  std::ostringstream out;
  fresh.save(out);
  const std::string bytes = out.str();
  write_file_atomic(file, bytes.data(), bytes.size());
}

}  // namespace nad::models
