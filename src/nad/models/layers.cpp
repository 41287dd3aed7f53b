#include "nad/models/layers.h"

namespace nad::models {

std::vector<WeightedLayer> weighted_layers(const Classifier& model) {
  std::vector<WeightedLayer> layers;
  const auto buffers = model->named_buffers();
  const std::string suffix = ".weight";
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    WeightedLayer layer;
    layer.path = name.substr(0, name.size() - suffix.size());
    const int64_t dim = item.value().dim();
    if (dim == 4) {
      layer.kind = LayerKind::kConvolution;
    } else if (dim == 1 && buffers.find(layer.path + ".running_var") != nullptr) {
      layer.kind = LayerKind::kBatchNorm;
    } else if (dim == 2) {
      layer.kind = LayerKind::kLinear;
    }
    layers.push_back(std::move(layer));
  }
  return layers;
}

}  // namespace nad::models
