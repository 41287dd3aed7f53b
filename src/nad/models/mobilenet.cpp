#include "nad/models/mobilenet.h"

#include "nad/models/inference.h"
#include "nad/models/registry.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::models {
namespace nn = torch::nn;

namespace {
// MobileNetV3's BatchNorms: eps 0.001, momentum 0.01 (V2 has PyTorch's defaults).
nn::BatchNormOptions v3_norm() { return nn::BatchNormOptions(0).eps(0.001).momentum(0.01); }
}  // namespace

MobileNetV2BlockImpl::MobileNetV2BlockImpl(int64_t in, int64_t out, int64_t stride,
                                           int64_t expand_ratio)
    : residual_(stride == 1 && in == out) {
  const int64_t hidden = in * expand_ratio;
  auto conv = register_module("conv", nn::Sequential());
  if (expand_ratio != 1) {
    expand_ = ConvNormActivation(in, hidden, 1, 1, 1, Activation::kReLU6);
    conv->push_back(expand_);
  }
  depthwise_ = ConvNormActivation(hidden, hidden, 3, stride, hidden, Activation::kReLU6);
  conv->push_back(depthwise_);
  project_ = nn::Conv2d(nn::Conv2dOptions(hidden, out, 1).bias(false));
  conv->push_back(project_);
  project_bn_ = BatchNorm2d(out);
  conv->push_back(project_bn_);
}

torch::Tensor MobileNetV2BlockImpl::forward(const torch::Tensor& x) {
  const bool inference = takes_inference_path(*this);
  torch::Tensor y = expand_ ? expand_->forward(x) : x;
  y = depthwise_->forward(y);
  y = inference ? conv_then_batch_norm(*project_, *project_bn_, y, 0)
                : project_bn_->forward(project_->forward(y));
  if (!residual_) return y;
  return inference ? y.add_(x) : x + y;
}

MobileNetV3BlockImpl::MobileNetV3BlockImpl(int64_t in, int64_t kernel, int64_t expanded,
                                           int64_t out, bool se, Activation activation,
                                           int64_t stride)
    : residual_(stride == 1 && in == out) {
  auto block = register_module("block", nn::Sequential());
  if (expanded != in) {
    expand_ = ConvNormActivation(in, expanded, 1, 1, 1, activation, v3_norm());
    block->push_back(expand_);
  }
  depthwise_ =
      ConvNormActivation(expanded, expanded, kernel, stride, expanded, activation, v3_norm());
  block->push_back(depthwise_);
  if (se) {
    se_ = SqueezeExcitation(expanded, make_divisible(static_cast<double>(expanded / 4), 8),
                            Activation::kReLU, Activation::kHardsigmoid);
    block->push_back(se_);
  }
  project_ = ConvNormActivation(expanded, out, 1, 1, 1, Activation::kNone, v3_norm());
  block->push_back(project_);
}

torch::Tensor MobileNetV3BlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = expand_ ? expand_->forward(x) : x;
  y = depthwise_->forward(y);
  if (se_) y = se_->forward(y);
  y = project_->forward(y);
  if (!residual_) return y;
  return takes_inference_path(*this) ? y.add_(x) : x + y;
}

MobileNetImpl::MobileNetImpl(const MobileNetOptions& options)
    : v3_(options.arch() == "mobilenet_v3_large") {
  if (!v3_ && options.arch() != "mobilenet_v2") {
    throw UserError("unknown " + flag::arch + " '" + options.arch() + "'");
  }
  features_ = register_module("features", nn::Sequential());
  // Per `features` entry: kernel and stride (for the map sizes), first weight.
  std::vector<int64_t> kernels, strides;
  auto add = [&](const auto& module, int64_t kernel, int64_t stride, const std::string& first) {
    const std::string prefix = "features." + std::to_string(features_->size()) + ".";
    features_->push_back(module);
    kernels.push_back(kernel);
    strides.push_back(stride);
    first_weights_.push_back(prefix + first);
  };

  int64_t last_width = 0;
  if (!v3_) {
    add(ConvNormActivation(options.in_channels(), 32, 3, 2, 1, Activation::kReLU6), 3, 2,
        "0.weight");
    // t, c, n, s
    const int64_t settings[][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                   {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t in = 32;
    for (const auto& [t, c, n, s] : settings) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t stride = i == 0 ? s : 1;
        add(MobileNetV2Block(in, c, stride, t), 3, stride, "conv.0.0.weight");
        in = c;
      }
    }
    add(ConvNormActivation(in, 1280, 1, 1, 1, Activation::kReLU6), 1, 1, "0.weight");
    last_width = 1280;
  } else {
    add(ConvNormActivation(options.in_channels(), 16, 3, 2, 1, Activation::kHardswish, v3_norm()),
        3, 2, "0.weight");
    struct Config {
      int64_t in, kernel, expanded, out;
      bool se, hardswish;
      int64_t stride;
    };
    const Config configs[] = {
        {16, 3, 16, 16, false, false, 1},  {16, 3, 64, 24, false, false, 2},
        {24, 3, 72, 24, false, false, 1},  {24, 5, 72, 40, true, false, 2},
        {40, 5, 120, 40, true, false, 1},  {40, 5, 120, 40, true, false, 1},
        {40, 3, 240, 80, false, true, 2},  {80, 3, 200, 80, false, true, 1},
        {80, 3, 184, 80, false, true, 1},  {80, 3, 184, 80, false, true, 1},
        {80, 3, 480, 112, true, true, 1},  {112, 3, 672, 112, true, true, 1},
        {112, 5, 672, 160, true, true, 2}, {160, 5, 960, 160, true, true, 1},
        {160, 5, 960, 160, true, true, 1},
    };
    for (const Config& c : configs) {
      add(MobileNetV3Block(c.in, c.kernel, c.expanded, c.out, c.se,
                           c.hardswish ? Activation::kHardswish : Activation::kReLU, c.stride),
          c.kernel, c.stride, "block.0.0.weight");
    }
    add(ConvNormActivation(160, 960, 1, 1, 1, Activation::kHardswish, v3_norm()), 1, 1, "0.weight");
    last_width = 960;
  }

  // Stage ends: the entries before a stride-2 one, and the last.
  std::vector<StageOutput> stages;
  std::vector<size_t> stage_index;
  int64_t h = options.height(), w = options.width();
  for (size_t i = 0; i < strides.size(); ++i) {
    h = window_output(h, kernels[i], strides[i], (kernels[i] - 1) / 2);
    w = window_output(w, kernels[i], strides[i], (kernels[i] - 1) / 2);
    if (i + 1 == strides.size() || strides[i + 1] == 2) {
      stages.push_back({"features." + std::to_string(i), h, w});
      stage_index.push_back(i);
    }
  }
  for (size_t s : choose_attention_stages(stages, options.arch(), options.height(), options.width(),
                                          options.groups())) {
    groups_.push_back(stage_index[s]);
  }

  auto classifier = register_module("classifier", nn::Sequential());
  if (!v3_) {
    classifier->push_back(nn::Dropout(0.2));
    fc_ = nn::Linear(last_width, options.num_classes());
    classifier->push_back(fc_);
  } else {
    hidden_ = nn::Linear(last_width, 1280);
    classifier->push_back(hidden_);
    classifier->push_back(nn::Functional([](torch::Tensor x) { return torch::hardswish(x); }));
    classifier->push_back(nn::Dropout(0.2));
    fc_ = nn::Linear(1280, options.num_classes());
    classifier->push_back(fc_);
  }
  init_torchvision_weights(*this, ConvInit::kFanOut, LinearInit::kNormal001);
}

ModelOutput MobileNetImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  torch::Tensor x = inputs;
  size_t index = 0;
  for (auto& module : *features_) {
    x = module.forward(x);
    collect_group(groups_, index, x, out.features);
    ++index;
  }
  x = x.mean({2, 3});
  if (hidden_) x = torch::hardswish(hidden_->forward(x));
  out.logits = fc_->forward(torch::dropout(x, 0.2, is_training()));
  return out;
}

std::vector<std::string> MobileNetImpl::group_names() const {
  std::vector<std::string> names;
  for (size_t i : groups_) names.push_back("features." + std::to_string(i));
  return names;
}

std::vector<double> MobileNetImpl::default_betas() const {
  return torchvision_default_betas(groups_.size());
}

std::vector<std::string> MobileNetImpl::group_consumers(size_t group) const {
  const size_t next = groups_.at(group) + 1;
  if (next < first_weights_.size()) return {first_weights_[next]};
  return {v3_ ? "classifier.0.weight" : "classifier.1.weight"};
}

ArchFamily mobilenet_family() {
  ArchFamily family;
  family.names = {"mobilenet_v2", "mobilenet_v3_large"};
  family.build = [](const ModelSpec& spec) -> Classifier {
    return std::make_shared<MobileNetImpl>(MobileNetOptions()
                                               .arch(spec.arch)
                                               .in_channels(spec.in_channels)
                                               .num_classes(spec.num_classes)
                                               .height(spec.height)
                                               .width(spec.width)
                                               .groups(spec.groups));
  };
  // V2's blocks hold `conv`, V3's `block`; the stems' widths (32, 16) and the last features
  // entries (18, 16) confirm.
  family.recognise = [](const StateDict& state) -> std::string {
    const torch::Tensor* stem = find_tensor(state, "features.0.0.weight");
    if (!stem || stem->dim() != 4) return "";
    if (stem->size(0) == 32 && has_tensor(state, "features.1.conv.0.0.weight") &&
        has_tensor(state, "features.18.0.weight") && has_tensor(state, "classifier.1.weight")) {
      return "mobilenet_v2";
    }
    if (stem->size(0) == 16 && has_tensor(state, "features.1.block.0.0.weight") &&
        has_tensor(state, "features.16.0.weight") && has_tensor(state, "classifier.3.weight")) {
      const torch::Tensor* last = find_tensor(state, "features.16.0.weight");
      if (last->dim() == 4 && last->size(0) == 960) return "mobilenet_v3_large";
    }
    return "";
  };
  family.foreign_names = {{"mobilenet_v2", "mobilenet_v2"},
                          {"mobilenet_v3_large", "mobilenet_v3_large"}};
  family.classifier_weight = [](const std::string& arch) {
    return std::string(arch == "mobilenet_v3_large" ? "classifier.3.weight"
                                                    : "classifier.1.weight");
  };
  family.input_weight = [](const std::string&) { return std::string("features.0.0.weight"); };
  bind_model_methods<MobileNetImpl>(family);
  return family;
}

}  // namespace nad::models
