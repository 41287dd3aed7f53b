#include "nad/models/resnet.h"

#include "nad/models/inference.h"
#include "nad/models/registry.h"

namespace nad::models {
namespace nn = torch::nn;

namespace {
nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return nn::Conv2d(
      nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}
}  // namespace

PreActBlockImpl::PreActBlockImpl(int64_t in_planes, int64_t planes, int64_t stride) {
  bn1_ = register_module("bn1", BatchNorm2d(in_planes));
  conv1_ = register_module("conv1", conv(in_planes, planes, 3, stride));
  bn2_ = register_module("bn2", BatchNorm2d(planes));
  conv2_ = register_module("conv2", conv(planes, planes, 3, 1));
  if (stride != 1 || in_planes != planes) {
    shortcut_ = register_module("shortcut", nn::Sequential(conv(in_planes, planes, 1, stride)));
  }
}

torch::Tensor PreActBlockImpl::forward(const torch::Tensor& x) {
  if (takes_inference_path(*this)) {
    torch::Tensor a = bn1_->forward(x).relu_();
    torch::Tensor h = conv_then_batch_norm(*conv1_, *bn2_, a, 1).relu_();
    return conv2_->forward(h).add_(shortcut_ ? shortcut_->forward(a) : x);
  }
  torch::Tensor a = torch::relu(bn1_->forward(x));
  torch::Tensor shortcut = shortcut_ ? shortcut_->forward(a) : x;
  return conv2_->forward(torch::relu(bn2_->forward(conv1_->forward(a)))) + shortcut;
}

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride) {
  conv1_ = register_module("conv1", conv(in_planes, planes, 3, stride));
  bn1_ = register_module("bn1", BatchNorm2d(planes));
  conv2_ = register_module("conv2", conv(planes, planes, 3, 1));
  bn2_ = register_module("bn2", BatchNorm2d(planes));
  if (stride != 1 || in_planes != planes) {
    shortcut_ = register_module(
        "shortcut", nn::Sequential(conv(in_planes, planes, 1, stride), BatchNorm2d(planes)));
  }
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  if (takes_inference_path(*this)) {
    torch::Tensor out = conv_then_batch_norm(*conv1_, *bn1_, x, 1).relu_();
    out = conv_then_batch_norm(*conv2_, *bn2_, out, 1);
    const torch::Tensor shortcut =
        shortcut_ ? conv_then_batch_norm(shortcut_->at<nn::Conv2dImpl>(0),
                                         shortcut_->at<BatchNorm2dImpl>(1), x, 0)
                  : x;
    return out.add_(shortcut).relu_();
  }
  torch::Tensor out = torch::relu(bn1_->forward(conv1_->forward(x)));
  out = bn2_->forward(conv2_->forward(out));
  return torch::relu(out + (shortcut_ ? shortcut_->forward(x) : x));
}

ResNet18Impl::ResNet18Impl(const ResNetOptions& options) : options_(options) {
  conv1_ = register_module("conv1", conv(options.in_channels(), 64, 3, 1));
  if (!options.preactivation()) bn1_ = register_module("bn1", BatchNorm2d(64));
  const int64_t widths[4] = {64, 128, 256, 512};
  int64_t in_planes = 64;
  for (int i = 0; i < 4; ++i) {
    layers_[i] = nn::Sequential();
    for (int j = 0; j < 2; ++j) {
      const int64_t stride = (i > 0 && j == 0) ? 2 : 1;
      if (options.preactivation()) {
        layers_[i]->push_back(PreActBlock(in_planes, widths[i], stride));
      } else {
        layers_[i]->push_back(BasicBlock(in_planes, widths[i], stride));
      }
      in_planes = widths[i];
    }
    register_module("layer" + std::to_string(i + 1), layers_[i]);
  }
  linear_ = register_module("linear", nn::Linear(512, options.num_classes()));
}

ModelOutput ResNet18Impl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  torch::Tensor x;
  if (bn1_ && takes_inference_path(*this)) {
    x = conv_then_batch_norm(*conv1_, *bn1_, inputs, 1).relu_();
  } else {
    x = conv1_->forward(inputs);
    if (bn1_) x = torch::relu(bn1_->forward(x));
  }
  x = layers_[0]->forward(x);
  for (int i = 1; i < 4; ++i) {
    x = layers_[i]->forward(x);
    out.features.push_back(x);
  }
  // Global average pooling: the 4x4 pool of the originals on 32x32 inputs.
  out.logits = linear_->forward(x.mean({2, 3}));
  return out;
}

ArchFamily cifar_resnet_family() {
  ArchFamily family;
  family.names = {"preact-resnet18", "resnet18"};
  family.build = [](const ModelSpec& spec) -> Classifier {
    return std::make_shared<ResNet18Impl>(ResNetOptions()
                                              .in_channels(spec.in_channels)
                                              .num_classes(spec.num_classes)
                                              .preactivation(spec.arch == "preact-resnet18"));
  };
  // A 3 x 3 stem (torchvision's ResNets have the same block names and a 7 x 7 one); the
  // post-activation form has a stem BatchNorm.
  family.recognise = [](const StateDict& state) -> std::string {
    const torch::Tensor* stem = find_tensor(state, "conv1.weight");
    if (!has_tensor(state, "layer4.1.conv2.weight") || !stem || stem->dim() != 4 ||
        stem->size(3) != 3) {
      return "";
    }
    return has_tensor(state, "bn1.weight") ? "resnet18" : "preact-resnet18";
  };
  family.foreign_names = {{"preactresnet18", "preact-resnet18"}};
  family.classifier_weight = [](const std::string&) { return std::string("linear.weight"); };
  family.input_weight = [](const std::string&) { return std::string("conv1.weight"); };
  bind_model_methods<ResNet18Impl>(family);
  return family;
}

}  // namespace nad::models
