#include "nad/models/wide_resnet.h"

#include <regex>

#include "nad/models/registry.h"
#include "nad/util/error.h"

#include <cmath>

#include "nad/models/inference.h"
#include "nad/util/flags.h"

namespace nad::models {
namespace nn = torch::nn;

namespace {
nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return nn::Conv2d(
      nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}
}  // namespace

WideBasicBlockImpl::WideBasicBlockImpl(int64_t in_planes, int64_t out_planes, int64_t stride)
    : equal_in_out_(in_planes == out_planes) {
  bn1_ = register_module("bn1", BatchNorm2d(in_planes));
  conv1_ = register_module("conv1", conv(in_planes, out_planes, 3, stride));
  bn2_ = register_module("bn2", BatchNorm2d(out_planes));
  conv2_ = register_module("conv2", conv(out_planes, out_planes, 3, 1));
  if (!equal_in_out_)
    shortcut_ = register_module("convShortcut", conv(in_planes, out_planes, 1, stride));
}

torch::Tensor WideBasicBlockImpl::forward(const torch::Tensor& x) {
  if (takes_inference_path(*this)) {
    torch::Tensor a = bn1_->forward(x).relu_();
    torch::Tensor h = conv_then_batch_norm(*conv1_, *bn2_, a, 1).relu_();
    return conv2_->forward(h).add_(equal_in_out_ ? x : shortcut_->forward(a));
  }
  torch::Tensor a = torch::relu(bn1_->forward(x));
  torch::Tensor residual = conv2_->forward(torch::relu(bn2_->forward(conv1_->forward(a))));
  return (equal_in_out_ ? x : shortcut_->forward(a)) + residual;
}

WideGroupImpl::WideGroupImpl(int64_t blocks, int64_t in_planes, int64_t out_planes,
                             int64_t stride) {
  layer_ = register_module("layer", nn::Sequential());
  for (int64_t i = 0; i < blocks; ++i) {
    layer_->push_back(
        WideBasicBlock(i == 0 ? in_planes : out_planes, out_planes, i == 0 ? stride : 1));
  }
}

WideResNetImpl::WideResNetImpl(const WideResNetOptions& options) : options_(options) {
  const int64_t k = options.widen_factor();
  const int64_t blocks = (options.depth() - 4) / 6;
  const int64_t widths[4] = {16, 16 * k, 32 * k, 64 * k};
  conv1_ = register_module("conv1", conv(options.in_channels(), widths[0], 3, 1));
  block1_ = register_module("block1", WideGroup(blocks, widths[0], widths[1], 1));
  block2_ = register_module("block2", WideGroup(blocks, widths[1], widths[2], 2));
  block3_ = register_module("block3", WideGroup(blocks, widths[2], widths[3], 2));
  bn1_ = register_module("bn1", BatchNorm2d(widths[3]));
  fc_ = register_module("fc", nn::Linear(widths[3], options.num_classes()));

  // The reference's initialisation: He normal on fan-out for convs, unit BatchNorm, zero fc bias.
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      const auto& w = c->weight;
      const double n = static_cast<double>(w.size(0) * w.size(2) * w.size(3));
      torch::NoGradGuard no_grad;
      w.normal_(0, std::sqrt(2.0 / n));
    } else if (auto* bn = module->as<BatchNorm2d>()) {
      torch::NoGradGuard no_grad;
      bn->weight.fill_(1);
      bn->bias.zero_();
    }
  }
  torch::NoGradGuard no_grad;
  fc_->bias.zero_();
}

ModelOutput WideResNetImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  torch::Tensor x = conv1_->forward(inputs);
  x = block1_->forward(x);
  out.features.push_back(x);
  x = block2_->forward(x);
  out.features.push_back(x);
  x = block3_->forward(x);
  out.features.push_back(x);
  x = takes_inference_path(*this) ? bn1_->forward(x).relu_() : torch::relu(bn1_->forward(x));
  // Global average pooling: the reference's 8x8 pool on 32x32 inputs, any size here.
  x = x.mean({2, 3});
  out.logits = fc_->forward(x);
  return out;
}

ArchFamily wide_resnet_family() {
  ArchFamily family;
  family.names = {"wrn-16-1", "wrn-D-K"};
  static const std::regex pattern("wrn-(\\d+)-(\\d+)");
  family.accepts = [](const std::string& arch) { return std::regex_match(arch, pattern); };
  family.build = [](const ModelSpec& spec) -> Classifier {
    std::smatch match;
    std::regex_match(spec.arch, match, pattern);
    const int64_t depth = std::stoll(match[1]);
    const int64_t width = std::stoll(match[2]);
    if (depth < 10 || (depth - 4) % 6 != 0 || width < 1) {
      throw UserError(flag::arch + " " + spec.arch +
                      ": WRN depth must be 6n+4 (10, 16, 22, 28, 40, ...) and width >= 1");
    }
    return std::make_shared<WideResNetImpl>(WideResNetOptions()
                                                .depth(depth)
                                                .widen_factor(width)
                                                .in_channels(spec.in_channels)
                                                .num_classes(spec.num_classes));
  };
  // The NAD reference's names: block1.layer.0.conv2 and a width in its channels.
  family.recognise = [](const StateDict& state) -> std::string {
    const torch::Tensor* conv = find_tensor(state, "block1.layer.0.conv2.weight");
    if (!conv) return "";
    int64_t blocks = 0;
    while (has_tensor(state, "block1.layer." + std::to_string(blocks) + ".conv1.weight")) ++blocks;
    const int64_t width = conv->dim() == 4 ? conv->size(0) / 16 : 0;
    if (width < 1) return "";
    return "wrn-" + std::to_string(6 * blocks + 4) + "-" + std::to_string(width);
  };
  family.classifier_weight = [](const std::string&) { return std::string("fc.weight"); };
  family.input_weight = [](const std::string&) { return std::string("conv1.weight"); };
  bind_model_methods<WideResNetImpl>(family);
  return family;
}

}  // namespace nad::models
