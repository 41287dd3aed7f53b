#include "nad/models/registry.h"

#include <stdexcept>

namespace nad::models {

const std::vector<ArchFamily>& arch_families() {
  static const std::vector<ArchFamily> families = {
      wide_resnet_family(),        cifar_resnet_family(), mnist_cnn_family(),
      torchvision_resnet_family(), vgg_family(),          mobilenet_family(),
      efficientnet_family(),       densenet_family(),     torchscript_family(),
  };
  return families;
}

const ArchFamily* find_family(const std::string& arch) {
  for (const ArchFamily& family : arch_families()) {
    if (family.accepts
            ? family.accepts(arch)
            : std::find(family.names.begin(), family.names.end(), arch) != family.names.end()) {
      return &family;
    }
  }
  return nullptr;
}

std::string arch_from_foreign_name(const std::string& name) {
  for (const ArchFamily& family : arch_families()) {
    for (const auto& [foreign, own] : family.foreign_names) {
      if (foreign == name) return own;
    }
  }
  return "";
}

std::vector<std::string> foreign_arch_names() {
  std::vector<std::string> names;
  for (const ArchFamily& family : arch_families()) {
    for (const auto& entry : family.foreign_names) names.push_back(entry.first);
  }
  return names;
}

std::string recognise_arch(const StateDict& state) {
  for (const ArchFamily& family : arch_families()) {
    if (!family.recognise) continue;
    if (std::string arch = family.recognise(state); !arch.empty()) return arch;
  }
  return "";
}

const ArchFamily& family_of(const ClassifierImpl& model) {
  for (const ArchFamily& family : arch_families()) {
    if (family.owns && family.owns(model)) return family;
  }
  throw std::logic_error("a model of no registered architecture family");
}

std::vector<double> default_betas(const Classifier& model) {
  return family_of(*model).default_betas(*model);
}

std::vector<std::string> group_consumers(const Classifier& model, size_t group) {
  return family_of(*model).group_consumers(*model, group);
}

const torch::Tensor* find_tensor(const StateDict& state, const std::string& name) {
  for (const auto& [key, tensor] : state) {
    if (key == name) return &tensor;
  }
  return nullptr;
}

}  // namespace nad::models
