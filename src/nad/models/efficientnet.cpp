#include "nad/models/efficientnet.h"

#include "nad/models/inference.h"
#include "nad/models/registry.h"

namespace nad::models {
namespace nn = torch::nn;

MBConvImpl::MBConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                       int64_t expand_ratio, double drop)
    : residual_(stride == 1 && in == out), drop_(drop) {
  const int64_t expanded = make_divisible(static_cast<double>(in * expand_ratio), 8);
  auto block = register_module("block", nn::Sequential());
  if (expanded != in) {
    expand_ = ConvNormActivation(in, expanded, 1, 1, 1, Activation::kSiLU);
    block->push_back(expand_);
  }
  depthwise_ = ConvNormActivation(expanded, expanded, kernel, stride, expanded, Activation::kSiLU);
  block->push_back(depthwise_);
  se_ = SqueezeExcitation(expanded, std::max<int64_t>(1, in / 4), Activation::kSiLU,
                          Activation::kSigmoid);
  block->push_back(se_);
  project_ = ConvNormActivation(expanded, out, 1, 1, 1, Activation::kNone);
  block->push_back(project_);
}

torch::Tensor MBConvImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = expand_ ? expand_->forward(x) : x;
  y = project_->forward(se_->forward(depthwise_->forward(y)));
  if (!residual_) return y;
  if (is_training() && drop_ > 0) {
    // torchvision.ops.stochastic_depth(mode="row").
    const double survival = 1.0 - drop_;
    torch::Tensor noise = torch::empty({y.size(0), 1, 1, 1}, y.options()).bernoulli_(survival);
    if (survival > 0) noise.div_(survival);
    y = y * noise;
  }
  return takes_inference_path(*this) ? y.add_(x) : y + x;
}

void MBConvStageImpl::add(MBConv block) {
  blocks_.push_back(register_module(std::to_string(blocks_.size()), std::move(block)));
}

torch::Tensor MBConvStageImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (auto& block : blocks_) y = block->forward(y);
  return y;
}

EfficientNetImpl::EfficientNetImpl(const EfficientNetOptions& options) {
  features_ = register_module("features", nn::Sequential());
  std::vector<StageOutput> stages;
  std::vector<size_t> stage_index;
  int64_t h = window_output(options.height(), 3, 2, 1);
  int64_t w = window_output(options.width(), 3, 2, 1);
  features_->push_back(ConvNormActivation(options.in_channels(), 32, 3, 2, 1, Activation::kSiLU));

  struct Stage {
    int64_t expand_ratio, kernel, stride, in, out, layers;
  };
  const Stage settings[] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                            {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                            {6, 3, 1, 192, 320, 1}};
  int64_t total_blocks = 0;
  for (const Stage& s : settings) total_blocks += s.layers;
  int64_t block_id = 0;
  for (size_t i = 0; i < std::size(settings); ++i) {
    const Stage& s = settings[i];
    MBConvStage stage;
    for (int64_t j = 0; j < s.layers; ++j) {
      const double drop = 0.2 * static_cast<double>(block_id) / static_cast<double>(total_blocks);
      MBConv block(j == 0 ? s.in : s.out, s.out, s.kernel, j == 0 ? s.stride : 1, s.expand_ratio,
                   drop);
      stage->add(block);
      ++block_id;
    }
    const size_t index = features_->size();
    features_->push_back(stage);
    h = window_output(h, s.kernel, s.stride, (s.kernel - 1) / 2);
    w = window_output(w, s.kernel, s.stride, (s.kernel - 1) / 2);
    // A stage ends a resolution where the next one starts with stride 2 (the last stage runs
    // on into features.8).
    if (i + 1 < std::size(settings) && settings[i + 1].stride == 2) {
      stages.push_back({"features." + std::to_string(index), h, w});
      stage_index.push_back(index);
    }
  }
  const size_t last = features_->size();
  features_->push_back(ConvNormActivation(320, 1280, 1, 1, 1, Activation::kSiLU));
  stages.push_back({"features." + std::to_string(last), h, w});
  stage_index.push_back(last);
  for (size_t s : choose_attention_stages(stages, "efficientnet_b0", options.height(),
                                          options.width(), options.groups())) {
    groups_.push_back(stage_index[s]);
  }

  auto classifier = register_module("classifier", nn::Sequential());
  classifier->push_back(nn::Dropout(0.2));
  fc_ = nn::Linear(1280, options.num_classes());
  classifier->push_back(fc_);
  init_torchvision_weights(*this, ConvInit::kFanOut, LinearInit::kUniformOut);
}

ModelOutput EfficientNetImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  torch::Tensor x = inputs;
  size_t index = 0;
  for (auto& module : *features_) {
    x = module.forward(x);
    collect_group(groups_, index, x, out.features);
    ++index;
  }
  out.logits = fc_->forward(torch::dropout(x.mean({2, 3}), 0.2, is_training()));
  return out;
}

std::vector<std::string> EfficientNetImpl::group_names() const {
  std::vector<std::string> names;
  for (size_t i : groups_) names.push_back("features." + std::to_string(i));
  return names;
}

std::vector<double> EfficientNetImpl::default_betas() const {
  return torchvision_default_betas(groups_.size());
}

std::vector<std::string> EfficientNetImpl::group_consumers(size_t group) const {
  const size_t next = groups_.at(group) + 1;
  if (next + 1 == features_->size()) return {"features." + std::to_string(next) + ".0.weight"};
  if (next < features_->size()) {
    return {"features." + std::to_string(next) + ".0." + MBConvImpl::first_conv() + ".weight"};
  }
  return {"classifier.1.weight"};
}

ArchFamily efficientnet_family() {
  ArchFamily family;
  family.names = {"efficientnet_b0"};
  family.build = [](const ModelSpec& spec) -> Classifier {
    return std::make_shared<EfficientNetImpl>(EfficientNetOptions()
                                                  .in_channels(spec.in_channels)
                                                  .num_classes(spec.num_classes)
                                                  .height(spec.height)
                                                  .width(spec.width)
                                                  .groups(spec.groups));
  };
  // B0's widths: a 32-wide stem, 320 channels into the 1280-wide features.8.
  family.recognise = [](const StateDict& state) -> std::string {
    const torch::Tensor* stem = find_tensor(state, "features.0.0.weight");
    const torch::Tensor* head = find_tensor(state, "features.8.0.weight");
    if (!stem || !head || stem->dim() != 4 || head->dim() != 4 || stem->size(0) != 32 ||
        head->size(0) != 1280 || head->size(1) != 320 ||
        !has_tensor(state, "features.1.0.block.0.0.weight") ||
        !has_tensor(state, "classifier.1.weight")) {
      return "";
    }
    // B0's depths (B1 and up repeat blocks: features.2.2 exists there).
    if (has_tensor(state, "features.2.2.block.0.0.weight") ||
        !has_tensor(state, "features.6.3.block.0.0.weight")) {
      return "";
    }
    return "efficientnet_b0";
  };
  family.foreign_names = {{"efficientnet_b0", "efficientnet_b0"}};
  family.classifier_weight = [](const std::string&) { return std::string("classifier.1.weight"); };
  family.input_weight = [](const std::string&) { return std::string("features.0.0.weight"); };
  bind_model_methods<EfficientNetImpl>(family);
  return family;
}

}  // namespace nad::models
