#include "nad/models/densenet.h"

#include "nad/models/inference.h"
#include "nad/models/registry.h"
#include "nad/models/torchvision_layers.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::models {
namespace nn = torch::nn;

namespace {
constexpr int64_t kGrowth = 32, kBottleneck = 4 * kGrowth, kInitFeatures = 64;
constexpr int64_t kBlockLayers[4] = {6, 12, 24, 16};

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}
}  // namespace

DenseLayerImpl::DenseLayerImpl(int64_t in, int64_t growth, int64_t bottleneck) {
  norm1_ = register_module("norm1", BatchNorm2d(in));
  conv1_ = register_module("conv1", conv(in, bottleneck, 1, 1, 0));
  norm2_ = register_module("norm2", BatchNorm2d(bottleneck));
  conv2_ = register_module("conv2", conv(bottleneck, growth, 3, 1, 1));
}

torch::Tensor DenseLayerImpl::forward(const torch::Tensor& concatenated) {
  if (takes_inference_path(*this)) {
    torch::Tensor h = norm1_->forward(concatenated).relu_();
    return conv2_->forward(conv_then_batch_norm(*conv1_, *norm2_, h, 0).relu_());
  }
  torch::Tensor h = conv1_->forward(torch::relu(norm1_->forward(concatenated)));
  return conv2_->forward(torch::relu(norm2_->forward(h)));
}

DenseBlockImpl::DenseBlockImpl(int64_t layers, int64_t in, int64_t growth, int64_t bottleneck) {
  for (int64_t i = 0; i < layers; ++i) {
    layers_.push_back(register_module("denselayer" + std::to_string(i + 1),
                                      DenseLayer(in + i * growth, growth, bottleneck)));
  }
}

torch::Tensor DenseBlockImpl::forward(const torch::Tensor& x) {
  // As torchvision: each layer reads the concatenation of everything before it.
  std::vector<torch::Tensor> features = {x};
  for (auto& layer : layers_) features.push_back(layer->forward(torch::cat(features, 1)));
  return torch::cat(features, 1);
}

DenseNetImpl::DenseNetImpl(const DenseNetOptions& options) {
  const std::string size = std::to_string(options.height()) + "x" + std::to_string(options.width());
  std::vector<StageOutput> stages;
  int64_t h = window_output(window_output(options.height(), 7, 2, 3), 3, 2, 1);
  int64_t w = window_output(window_output(options.width(), 7, 2, 3), 3, 2, 1);

  // `features` only names its children (forward runs them itself).
  auto features = register_module("features", std::make_shared<nn::Module>());
  conv0_ = features->register_module("conv0", conv(options.in_channels(), kInitFeatures, 7, 2, 3));
  norm0_ = features->register_module("norm0", BatchNorm2d(kInitFeatures));
  int64_t width = kInitFeatures;
  for (int i = 0; i < 4; ++i) {
    const std::string k = std::to_string(i + 1);
    blocks_[i] = features->register_module(
        "denseblock" + k, DenseBlock(kBlockLayers[i], width, kGrowth, kBottleneck));
    width += kBlockLayers[i] * kGrowth;
    stages.push_back({"features.denseblock" + k, h, w});
    if (i < 3) {
      // A named container for the transition's norm and conv (its ReLU and pool hold nothing).
      auto transition = std::make_shared<nn::Module>();
      transition_norms_[i] = transition->register_module("norm", BatchNorm2d(width));
      transition_convs_[i] = transition->register_module("conv", conv(width, width / 2, 1, 1, 0));
      features->register_module("transition" + k, transition);
      width /= 2;
      h = window_output(h, 2, 2, 0);
      w = window_output(w, 2, 2, 0);
      if (h < 1 || w < 1) {
        throw UserError(flag::arch + " densenet121 cannot take " + size +
                        " inputs: the map of features.transition" + k + " would be empty");
      }
    }
  }
  norm5_ = features->register_module("norm5", BatchNorm2d(width));
  classifier_ = register_module("classifier", nn::Linear(width, options.num_classes()));
  groups_ = choose_attention_stages(stages, "densenet121", options.height(), options.width(),
                                    options.groups());
  init_torchvision_weights(*this, ConvInit::kFanIn, LinearInit::kDefaultZeroBias);
}

ModelOutput DenseNetImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  const bool inference = takes_inference_path(*this);
  torch::Tensor x = inference ? conv_then_batch_norm(*conv0_, *norm0_, inputs, 3).relu_()
                              : torch::relu(norm0_->forward(conv0_->forward(inputs)));
  x = torch::max_pool2d(x, 3, 2, 1);
  for (size_t i = 0; i < 4; ++i) {
    x = blocks_[i]->forward(x);
    collect_group(groups_, i, x, out.features);
    if (i < 3) {
      x = transition_norms_[i]->forward(x);
      x = transition_convs_[i]->forward(inference ? x.relu_() : torch::relu(x));
      x = torch::avg_pool2d(x, 2, 2);
    }
  }
  x = norm5_->forward(x);
  x = inference ? x.relu_() : torch::relu(x);
  out.logits = classifier_->forward(x.mean({2, 3}));
  return out;
}

std::vector<std::string> DenseNetImpl::group_names() const {
  std::vector<std::string> names;
  for (size_t i : groups_) names.push_back("features.denseblock" + std::to_string(i + 1));
  return names;
}

std::vector<double> DenseNetImpl::default_betas() const {
  return torchvision_default_betas(groups_.size());
}

std::vector<std::string> DenseNetImpl::group_consumers(size_t group) const {
  const size_t block = groups_.at(group);
  if (block == 3) return {"classifier.weight"};
  return {"features.transition" + std::to_string(block + 1) + ".conv.weight"};
}

ArchFamily densenet_family() {
  ArchFamily family;
  family.names = {"densenet121"};
  family.build = [](const ModelSpec& spec) -> Classifier {
    return std::make_shared<DenseNetImpl>(DenseNetOptions()
                                              .in_channels(spec.in_channels)
                                              .num_classes(spec.num_classes)
                                              .height(spec.height)
                                              .width(spec.width)
                                              .groups(spec.groups));
  };
  // torchvision's names (not the legacy `norm.1` ones of its old pretrained files), 121's block
  // depths and growth 32.
  family.recognise = [](const StateDict& state) -> std::string {
    const torch::Tensor* conv0 = find_tensor(state, "features.conv0.weight");
    const torch::Tensor* growth =
        find_tensor(state, "features.denseblock1.denselayer1.conv2.weight");
    if (!conv0 || !growth || growth->dim() != 4 || growth->size(0) != kGrowth ||
        !has_tensor(state, "classifier.weight")) {
      return "";
    }
    for (int i = 0; i < 4; ++i) {
      const std::string block = "features.denseblock" + std::to_string(i + 1) + ".denselayer";
      if (!has_tensor(state, block + std::to_string(kBlockLayers[i]) + ".conv2.weight") ||
          has_tensor(state, block + std::to_string(kBlockLayers[i] + 1) + ".conv2.weight")) {
        return "";
      }
    }
    return conv0->dim() == 4 && conv0->size(0) == kInitFeatures ? "densenet121" : "";
  };
  family.foreign_names = {{"densenet121", "densenet121"}};
  family.classifier_weight = [](const std::string&) { return std::string("classifier.weight"); };
  family.input_weight = [](const std::string&) { return std::string("features.conv0.weight"); };
  bind_model_methods<DenseNetImpl>(family);
  return family;
}

}  // namespace nad::models
