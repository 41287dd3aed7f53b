#pragma once
#include <functional>
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

namespace nad::models {

// A BatchNorm layer's affine weight and bias as its forward reads them, replaced for a while
// without touching the registered parameters, so that the replacement may be computed from other
// tensors and gradients flow to those (ANP's neuron masks and perturbations). Works for nad's
// architectures (the module's members) and TorchScript models (the scripted module's attributes).
// The destructor restores the parameters.
class BatchNormAffineOverride {
 public:
  // `path` as in weighted_layers ("block1.layer.0.bn1"); a UserError when it is not an affine
  // BatchNorm of `model`.
  BatchNormAffineOverride(const Classifier& model, const std::string& path);
  ~BatchNormAffineOverride();
  BatchNormAffineOverride(const BatchNormAffineOverride&) = delete;
  BatchNormAffineOverride& operator=(const BatchNormAffineOverride&) = delete;

  const std::string& path() const { return path_; }
  // The registered parameters.
  const torch::Tensor& weight() const { return weight_; }
  const torch::Tensor& bias() const { return bias_; }
  // What forward reads from now on.
  void set(const torch::Tensor& weight, const torch::Tensor& bias);
  // Forward reads the registered parameters again.
  void restore();

 private:
  std::string path_;
  torch::Tensor weight_, bias_;
  std::function<void(const torch::Tensor&, const torch::Tensor&)> assign_;
};

}  // namespace nad::models
