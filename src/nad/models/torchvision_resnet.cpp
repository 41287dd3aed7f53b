#include "nad/models/torchvision_resnet.h"

#include "nad/models/inference.h"
#include "nad/models/registry.h"
#include "nad/models/torchvision_layers.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::models {
namespace nn = torch::nn;

namespace {
nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return nn::Conv2d(
      nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

nn::Sequential downsample(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return nn::Sequential(conv(in, out, 1, stride), BatchNorm2d(out));
}

torch::Tensor shortcut(nn::Sequential& downsample, const torch::Tensor& x, bool inference) {
  if (!downsample) return x;
  if (!inference) return downsample->forward(x);
  return conv_then_batch_norm(downsample->at<nn::Conv2dImpl>(0), downsample->at<BatchNorm2dImpl>(1),
                              x, 0);
}

struct Layout {
  std::vector<int64_t> blocks;
  bool bottleneck;
};

Layout layout_of(const std::string& arch) {
  if (arch == "tv-resnet18") return {{2, 2, 2, 2}, false};
  if (arch == "tv-resnet34") return {{3, 4, 6, 3}, false};
  if (arch == "tv-resnet50") return {{3, 4, 6, 3}, true};
  throw UserError("unknown " + flag::arch + " '" + arch + "'");
}
}  // namespace

TorchvisionBasicBlockImpl::TorchvisionBasicBlockImpl(int64_t in_planes, int64_t planes,
                                                     int64_t stride) {
  conv1_ = register_module("conv1", conv(in_planes, planes, 3, stride));
  bn1_ = register_module("bn1", BatchNorm2d(planes));
  conv2_ = register_module("conv2", conv(planes, planes, 3, 1));
  bn2_ = register_module("bn2", BatchNorm2d(planes));
  if (auto d = downsample(in_planes, planes, stride))
    downsample_ = register_module("downsample", d);
}

torch::Tensor TorchvisionBasicBlockImpl::forward(const torch::Tensor& x) {
  if (takes_inference_path(*this)) {
    torch::Tensor out = conv_then_batch_norm(*conv1_, *bn1_, x, 1).relu_();
    out = conv_then_batch_norm(*conv2_, *bn2_, out, 1);
    return out.add_(shortcut(downsample_, x, true)).relu_();
  }
  torch::Tensor out = torch::relu(bn1_->forward(conv1_->forward(x)));
  out = bn2_->forward(conv2_->forward(out));
  return torch::relu(out + shortcut(downsample_, x, false));
}

TorchvisionBottleneckImpl::TorchvisionBottleneckImpl(int64_t in_planes, int64_t planes,
                                                     int64_t stride) {
  conv1_ = register_module("conv1", conv(in_planes, planes, 1, 1));
  bn1_ = register_module("bn1", BatchNorm2d(planes));
  conv2_ = register_module("conv2", conv(planes, planes, 3, stride));
  bn2_ = register_module("bn2", BatchNorm2d(planes));
  conv3_ = register_module("conv3", conv(planes, 4 * planes, 1, 1));
  bn3_ = register_module("bn3", BatchNorm2d(4 * planes));
  if (auto d = downsample(in_planes, 4 * planes, stride)) {
    downsample_ = register_module("downsample", d);
  }
}

torch::Tensor TorchvisionBottleneckImpl::forward(const torch::Tensor& x) {
  if (takes_inference_path(*this)) {
    torch::Tensor out = conv_then_batch_norm(*conv1_, *bn1_, x, 0).relu_();
    out = conv_then_batch_norm(*conv2_, *bn2_, out, 1).relu_();
    out = conv_then_batch_norm(*conv3_, *bn3_, out, 0);
    return out.add_(shortcut(downsample_, x, true)).relu_();
  }
  torch::Tensor out = torch::relu(bn1_->forward(conv1_->forward(x)));
  out = torch::relu(bn2_->forward(conv2_->forward(out)));
  out = bn3_->forward(conv3_->forward(out));
  return torch::relu(out + shortcut(downsample_, x, false));
}

TorchvisionResNetImpl::TorchvisionResNetImpl(const TorchvisionResNetOptions& options)
    : options_(options) {
  const Layout layout = layout_of(options.arch());
  blocks_ = layout.blocks;
  bottleneck_ = layout.bottleneck;
  const int64_t expansion = bottleneck_ ? 4 : 1;

  // Map sizes: the stem convolution and the max-pool halve, then layer2..4 each halve.
  std::vector<StageOutput> stages;
  int64_t h = window_output(window_output(options.height(), 7, 2, 3), 3, 2, 1);
  int64_t w = window_output(window_output(options.width(), 7, 2, 3), 3, 2, 1);
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      h = window_output(h, 3, 2, 1);
      w = window_output(w, 3, 2, 1);
    }
    stages.push_back({"layer" + std::to_string(i + 1), h, w});
  }
  groups_ = choose_attention_stages(stages, options.arch(), options.height(), options.width(),
                                    options.groups());

  conv1_ = register_module("conv1", conv(options.in_channels(), 64, 7, 2));
  bn1_ = register_module("bn1", BatchNorm2d(64));
  int64_t in_planes = 64;
  for (int i = 0; i < 4; ++i) {
    const int64_t planes = int64_t{64} << i;
    layers_[i] = nn::Sequential();
    for (int64_t j = 0; j < blocks_[i]; ++j) {
      const int64_t stride = (i > 0 && j == 0) ? 2 : 1;
      if (bottleneck_) {
        layers_[i]->push_back(TorchvisionBottleneck(in_planes, planes, stride));
      } else {
        layers_[i]->push_back(TorchvisionBasicBlock(in_planes, planes, stride));
      }
      in_planes = planes * expansion;
    }
    register_module("layer" + std::to_string(i + 1), layers_[i]);
  }
  fc_ = register_module("fc", nn::Linear(512 * expansion, options.num_classes()));
  init_torchvision_weights(*this, ConvInit::kFanOut, LinearInit::kDefault);
}

ModelOutput TorchvisionResNetImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  torch::Tensor x = takes_inference_path(*this)
                        ? conv_then_batch_norm(*conv1_, *bn1_, inputs, 3).relu_()
                        : torch::relu(bn1_->forward(conv1_->forward(inputs)));
  x = torch::max_pool2d(x, 3, 2, 1);
  for (size_t i = 0; i < 4; ++i) {
    x = layers_[i]->forward(x);
    collect_group(groups_, i, x, out.features);
  }
  out.logits = fc_->forward(x.mean({2, 3}));
  return out;
}

std::vector<std::string> TorchvisionResNetImpl::group_names() const {
  std::vector<std::string> names;
  for (size_t i : groups_) names.push_back("layer" + std::to_string(i + 1));
  return names;
}

std::vector<double> TorchvisionResNetImpl::default_betas() const {
  return torchvision_default_betas(groups_.size());
}

std::vector<std::string> TorchvisionResNetImpl::group_consumers(size_t group) const {
  const size_t layer = groups_.at(group);
  if (layer == 3) return {"fc.weight"};
  const std::string next = "layer" + std::to_string(layer + 2) + ".0.";
  return {next + "conv1.weight", next + "downsample.0.weight"};
}

ArchFamily torchvision_resnet_family() {
  ArchFamily family;
  family.names = {"tv-resnet18", "tv-resnet34", "tv-resnet50"};
  family.build = [](const ModelSpec& spec) -> Classifier {
    return std::make_shared<TorchvisionResNetImpl>(TorchvisionResNetOptions()
                                                       .arch(spec.arch)
                                                       .in_channels(spec.in_channels)
                                                       .num_classes(spec.num_classes)
                                                       .height(spec.height)
                                                       .width(spec.width)
                                                       .groups(spec.groups));
  };
  // A 7x7 stem (the CIFAR ResNet's is 3x3, with the same block names); the block counts tell
  // 18 from 34, conv3 tells the bottleneck's 50.
  family.recognise = [](const StateDict& state) -> std::string {
    const torch::Tensor* stem = find_tensor(state, "conv1.weight");
    if (!stem || stem->dim() != 4 || stem->size(3) != 7 || !has_tensor(state, "fc.weight")) {
      return "";
    }
    std::vector<int64_t> blocks;
    for (int i = 1; i <= 4; ++i) {
      int64_t n = 0;
      while (has_tensor(state,
                        "layer" + std::to_string(i) + "." + std::to_string(n) + ".conv1.weight")) {
        ++n;
      }
      blocks.push_back(n);
    }
    const bool bottleneck = has_tensor(state, "layer1.0.conv3.weight");
    if (blocks == std::vector<int64_t>{2, 2, 2, 2} && !bottleneck) return "tv-resnet18";
    if (blocks == std::vector<int64_t>{3, 4, 6, 3})
      return bottleneck ? "tv-resnet50" : "tv-resnet34";
    return "";
  };
  family.foreign_names = {
      {"resnet18", "tv-resnet18"}, {"resnet34", "tv-resnet34"}, {"resnet50", "tv-resnet50"}};
  family.classifier_weight = [](const std::string&) { return std::string("fc.weight"); };
  family.input_weight = [](const std::string&) { return std::string("conv1.weight"); };
  bind_model_methods<TorchvisionResNetImpl>(family);
  return family;
}

}  // namespace nad::models
