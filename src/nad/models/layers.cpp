#include "nad/models/layers.h"

#include <sstream>

#include "nad/models/batch_norm.h"
#include "nad/models/torchscript.h"
#include "nad/util/error.h"

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

namespace nad::models {

BatchNormAffineOverride::BatchNormAffineOverride(const Classifier& model, const std::string& path)
    : path_(path) {
  if (auto* scripted = dynamic_cast<TorchScriptClassifierImpl*>(model.get())) {
    torch::jit::Module module = scripted->module();
    std::string part;
    std::istringstream parts(path);
    while (std::getline(parts, part, '.')) {
      if (!module.hasattr(part) || !module.attr(part).isModule()) {
        throw UserError("no BatchNorm layer " + path + " in the TorchScript model");
      }
      module = module.attr(part).toModule();
    }
    if (!module.hasattr("weight") || !module.attr("weight").isTensor() || !module.hasattr("bias") ||
        !module.attr("bias").isTensor() || !module.hasattr("running_var")) {
      throw UserError(path + " is not an affine BatchNorm layer");
    }
    weight_ = module.attr("weight").toTensor();
    bias_ = module.attr("bias").toTensor();
    assign_ = [module](const torch::Tensor& w, const torch::Tensor& b) mutable {
      module.setattr("weight", w);
      module.setattr("bias", b);
    };
  } else {
    std::shared_ptr<BatchNorm2dImpl> bn;
    for (const auto& item : model->named_modules()) {
      if (item.key() == path) bn = std::dynamic_pointer_cast<BatchNorm2dImpl>(item.value());
    }
    if (!bn) throw UserError(path + " is not a BatchNorm layer of the model");
    if (!bn->options.affine()) throw UserError(path + " is a BatchNorm layer without weights");
    weight_ = bn->weight;
    bias_ = bn->bias;
    assign_ = [bn](const torch::Tensor& w, const torch::Tensor& b) {
      bn->weight = w;
      bn->bias = b;
    };
  }
}

BatchNormAffineOverride::~BatchNormAffineOverride() { restore(); }

void BatchNormAffineOverride::set(const torch::Tensor& weight, const torch::Tensor& bias) {
  assign_(weight, bias);
}

void BatchNormAffineOverride::restore() { assign_(weight_, bias_); }

}  // namespace nad::models
