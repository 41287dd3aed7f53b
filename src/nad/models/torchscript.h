#pragma once
#include <torch/script.h>

#include <filesystem>
#include <string>
#include <vector>

#include "nad/models/classifier.h"
#include "nad/models/registry.h"

// Any TorchScript classifier as a nad model. The archive's bytes are kept (checked by
// io/torchscript_archive.h before anything was compiled) under a key, and the architecture name
// is "torchscript:<key>", so that building the "same architecture" (clone_model, the teacher of
// NAD) loads a fresh copy of the module.
//
// Attention groups are submodules named by path ("layer2", "features.6"); their outputs come
// out of the same forward pass as the logits: nad adds a method to its working copy of the
// module, a copy of `forward` whose graph also returns the named submodules' outputs (the
// calls of their ancestors inlined until the named call appears). The saved model.ts is written
// from a fresh copy of the user's archive, so it keeps exactly the user's methods.
namespace nad::models {

// Keeps `bytes` (a checked TorchScript archive) and returns the architecture name to build it
// by: "torchscript:<sha256 prefix>".
std::string register_torchscript(const std::string& bytes, const std::string& source);
// The archive's bytes and where it came from, for "torchscript:..." names.
const std::string& torchscript_bytes(const std::string& arch);
const std::string& torchscript_source(const std::string& arch);
bool is_torchscript_arch(const std::string& arch);

// A candidate attention group: a submodule called once by forward, with a 4-D output.
struct TorchScriptStage {
  std::string path;
  std::vector<int64_t> shape;  // N x C x H x W on the probe input
};
// The submodules of `arch`'s forward, in call order, that could be attention groups (called
// once, a 4-D output), with their output shapes on an input of `input_shape` (N x C x H x W).
std::vector<TorchScriptStage> torchscript_stages(const std::string& arch,
                                                 const std::vector<int64_t>& input_shape);

class TorchScriptClassifierImpl : public ClassifierImpl {
 public:
  // `groups`: submodule paths whose outputs are the attention groups.
  TorchScriptClassifierImpl(torch::jit::Module module, std::vector<std::string> groups);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override { return groups_; }
  std::vector<double> default_betas() const;
  std::vector<std::string> group_consumers(size_t group) const;
  void train(bool on = true) override;

  torch::jit::Module& module() { return module_; }

 private:
  torch::jit::Module module_;
  std::vector<std::string> groups_;
};
TORCH_MODULE(TorchScriptClassifier);

// Writes `model`'s weights into a fresh copy of its TorchScript archive and saves that
// (atomically) as `file`: the user's methods and signature, nad's weights.
void save_torchscript(const Classifier& model, const std::string& arch,
                      const std::filesystem::path& file);

}  // namespace nad::models
