#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "nad/models/classifier.h"

// The architecture registry: every architecture nad builds or recognises in a checkpoint is one
// family here. Adding one is its own file (model + family entry) and one line in registry.cpp.
namespace nad::models {

// A state_dict: names and tensors in file order.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

struct ArchFamily {
  // The names --arch takes, as help and errors show them ("wrn-D-K" stands for a pattern).
  std::vector<std::string> names;
  // Whether `arch` is one of this family's; empty: exactly one of `names`.
  std::function<bool(const std::string& arch)> accepts;
  // Builds a freshly initialised model (spec.arch accepted); UserError on a shape it cannot take.
  std::function<Classifier(const ModelSpec& spec)> build;
  // The architecture a state_dict was saved from, when its weight names and shapes are this
  // family's; "" otherwise. Families are asked in registry order.
  std::function<std::string(const StateDict& state)> recognise;
  // Other programs' names for this family's architectures (BackdoorBench's `model_name`), each
  // with nad's name for it.
  std::vector<std::pair<std::string, std::string>> foreign_names;
  // The weight of the last classifier layer of `arch` (its rows are the classes), which gives a
  // bare state_dict's class count.
  std::function<std::string(const std::string& arch)> classifier_weight;
  // The first convolution's weight of `arch` (dimension 1 runs over the input's channels).
  std::function<std::string(const std::string& arch)> input_weight;

  // What defenses and attacks know of the family's built models (not part of the classifier
  // interface). Whether `model` is one of this family's:
  std::function<bool(const ClassifierImpl& model)> owns;
  // NAD's per-group attention weights from the paper's setting for this family;
  std::function<std::vector<double>(const ClassifierImpl& model)> default_betas;
  // the weight names of the layers that read group `group`'s output (dimension 1 of each weight
  // runs over that group's channels, flattened positions after them for a linear layer), by
  // which TrojanNN ranks a group's neurons (their summed outgoing weights).
  std::function<std::vector<std::string>(const ClassifierImpl& model, size_t group)>
      group_consumers;
};

// Fills `owns`, `default_betas` and `group_consumers` from the methods of the
// same names of the family's model class `Model`.
template <class Model>
void bind_model_methods(ArchFamily& family) {
  family.owns = [](const ClassifierImpl& model) {
    return dynamic_cast<const Model*>(&model) != nullptr;
  };
  family.default_betas = [](const ClassifierImpl& model) {
    return dynamic_cast<const Model&>(model).default_betas();
  };
  family.group_consumers = [](const ClassifierImpl& model, size_t group) {
    return dynamic_cast<const Model&>(model).group_consumers(group);
  };
}

// Every family, in the order checkpoints are matched against them.
const std::vector<ArchFamily>& arch_families();

// The family that builds `arch`, or nullptr.
const ArchFamily* find_family(const std::string& arch);

// nad's name for another program's architecture name ("preactresnet18" -> "preact-resnet18"),
// or "" when no family knows it.
std::string arch_from_foreign_name(const std::string& name);
// Every foreign name the registry knows, for error messages.
std::vector<std::string> foreign_arch_names();

// The family a built model belongs to; std::logic_error for a model no family owns.
const ArchFamily& family_of(const ClassifierImpl& model);
// The registry entry's knowledge of `model` (ArchFamily).
std::vector<double> default_betas(const Classifier& model);
std::vector<std::string> group_consumers(const Classifier& model, size_t group);

// The architecture a state_dict (names without a `module.` prefix) was saved from, or "".
std::string recognise_arch(const StateDict& state);

// Helpers for families' recognisers.
const torch::Tensor* find_tensor(const StateDict& state, const std::string& name);
inline bool has_tensor(const StateDict& state, const std::string& name) {
  return find_tensor(state, name) != nullptr;
}

// Families (each defined in its model's file).
ArchFamily wide_resnet_family();
ArchFamily cifar_resnet_family();
ArchFamily mnist_cnn_family();
ArchFamily torchvision_resnet_family();
ArchFamily vgg_family();
ArchFamily mobilenet_family();
ArchFamily efficientnet_family();
ArchFamily densenet_family();
// Any TorchScript archive, "torchscript:<key>" (torchscript.h).
ArchFamily torchscript_family();

}  // namespace nad::models
