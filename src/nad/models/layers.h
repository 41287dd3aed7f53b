#pragma once
#include <string>
#include <vector>

#include "nad/models/classifier.h"

namespace nad::models {

// What a layer with a `weight` parameter is, told by its tensors alone (so it works for nad's
// modules and a TorchScript model's mirror alike): a 4-D weight is a convolution, a 1-D weight
// beside a running_var buffer a BatchNorm, a 2-D weight a linear layer.
enum class LayerKind { kConvolution, kBatchNorm, kLinear, kOther };

struct WeightedLayer {
  std::string path;  // "block1.layer.0.conv1": its parameters are path + ".weight", ".bias"
  LayerKind kind = LayerKind::kOther;
};

// The model's layers that have a weight, in registration order (PyTorch's module order).
std::vector<WeightedLayer> weighted_layers(const Classifier& model);

}  // namespace nad::models
