#include "nad/models/vgg.h"

#include <map>

#include "nad/models/inference.h"
#include "nad/models/registry.h"
#include "nad/models/torchvision_layers.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::models {
namespace nn = torch::nn;

namespace {
constexpr int64_t kPool = 0;  // "M" in torchvision's configurations

// torchvision's cfgs "A", "B", "D", "E".
const std::vector<int64_t>& configuration(const std::string& depth) {
  static const std::map<std::string, std::vector<int64_t>> configurations = {
      {"vgg11", {64, kPool, 128, kPool, 256, 256, kPool, 512, 512, kPool, 512, 512, kPool}},
      {"vgg13",
       {64, 64, kPool, 128, 128, kPool, 256, 256, kPool, 512, 512, kPool, 512, 512, kPool}},
      {"vgg16",
       {64, 64, kPool, 128, 128, kPool, 256, 256, 256, kPool, 512, 512, 512, kPool, 512, 512, 512,
        kPool}},
      {"vgg19", {64,  64,  kPool, 128, 128,   kPool, 256, 256, 256, 256,  kPool,
                 512, 512, 512,   512, kPool, 512,   512, 512, 512, kPool}},
  };
  const auto it = configurations.find(depth);
  if (it == configurations.end()) throw UserError("unknown " + flag::arch + " '" + depth + "'");
  return it->second;
}

bool has_batch_norm(const std::string& arch) {
  return arch.size() > 3 && arch.compare(arch.size() - 3, 3, "_bn") == 0;
}

std::string depth_of(const std::string& arch) {
  return has_batch_norm(arch) ? arch.substr(0, arch.size() - 3) : arch;
}
}  // namespace

VggImpl::VggImpl(const VggOptions& options) {
  const bool batch_norm = has_batch_norm(options.arch());
  const std::vector<int64_t>& config = configuration(depth_of(options.arch()));

  auto features = register_module("features", nn::Sequential());
  std::vector<StageOutput> pools;
  std::vector<int64_t> pool_indices;
  int64_t in = options.in_channels(), h = options.height(), w = options.width();
  for (const int64_t v : config) {
    Layer layer;
    layer.index = static_cast<int64_t>(features->size());
    if (v == kPool) {
      features->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
      h = window_output(h, 2, 2, 0);
      w = window_output(w, 2, 2, 0);
      pools.push_back({"features." + std::to_string(layer.index), h, w});
      pool_indices.push_back(layer.index);
    } else {
      layer.conv = nn::Conv2d(nn::Conv2dOptions(in, v, 3).padding(1));
      features->push_back(layer.conv);
      if (batch_norm) {
        layer.bn = BatchNorm2d(v);
        features->push_back(layer.bn);
      }
      features->push_back(nn::ReLU(nn::ReLUOptions(true)));
      in = v;
    }
    layers_.push_back(layer);
  }
  after_last_ = static_cast<int64_t>(features->size());
  for (size_t i : choose_attention_stages(pools, options.arch(), options.height(), options.width(),
                                          options.groups())) {
    group_pools_.push_back(pool_indices[i]);
  }
  for (Layer& layer : layers_) {
    for (int64_t pool : group_pools_) layer.group |= layer.index == pool;
  }

  auto classifier = register_module("classifier", nn::Sequential());
  fc1_ = nn::Linear(512 * 7 * 7, 4096);
  fc2_ = nn::Linear(4096, 4096);
  fc3_ = nn::Linear(4096, options.num_classes());
  classifier->push_back(fc1_);
  classifier->push_back(nn::ReLU(nn::ReLUOptions(true)));
  classifier->push_back(nn::Dropout(0.5));
  classifier->push_back(fc2_);
  classifier->push_back(nn::ReLU(nn::ReLUOptions(true)));
  classifier->push_back(nn::Dropout(0.5));
  classifier->push_back(fc3_);
  init_torchvision_weights(*this, ConvInit::kFanOut, LinearInit::kNormal001);
}

ModelOutput VggImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  const bool inference = takes_inference_path(*this);
  torch::Tensor x = inputs;
  for (Layer& layer : layers_) {
    if (!layer.conv) {
      x = torch::max_pool2d(x, 2, 2);
      if (layer.group) out.features.push_back(x);
    } else if (inference) {
      x = (layer.bn ? conv_then_batch_norm(*layer.conv, *layer.bn, x, 1) : layer.conv->forward(x))
              .relu_();
    } else {
      x = layer.conv->forward(x);
      x = torch::relu(layer.bn ? layer.bn->forward(x) : x);
    }
  }
  // The pool is the identity on 7x7 maps (224x224 inputs); flattening runs channels first, then
  // the 7 x 7 positions, as torch.flatten does on torchvision's NCHW tensors.
  if (x.size(2) != 7 || x.size(3) != 7) x = torch::adaptive_avg_pool2d(x, {7, 7});
  x = x.flatten(1);
  const bool training = is_training();
  x = torch::dropout(torch::relu(fc1_->forward(x)), 0.5, training);
  x = torch::dropout(torch::relu(fc2_->forward(x)), 0.5, training);
  out.logits = fc3_->forward(x);
  return out;
}

std::vector<std::string> VggImpl::group_names() const {
  std::vector<std::string> names;
  for (int64_t pool : group_pools_) names.push_back("features." + std::to_string(pool));
  return names;
}

std::vector<double> VggImpl::default_betas() const {
  return torchvision_default_betas(group_pools_.size());
}

std::vector<std::string> VggImpl::group_consumers(size_t group) const {
  const int64_t next = group_pools_.at(group) + 1;
  if (next >= after_last_) return {"classifier.0.weight"};
  return {"features." + std::to_string(next) + ".weight"};
}

ArchFamily vgg_family() {
  ArchFamily family;
  family.names = {"vgg11", "vgg11_bn", "vgg13", "vgg13_bn",
                  "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"};
  family.build = [](const ModelSpec& spec) -> Classifier {
    return std::make_shared<VggImpl>(VggOptions()
                                         .arch(spec.arch)
                                         .in_channels(spec.in_channels)
                                         .num_classes(spec.num_classes)
                                         .height(spec.height)
                                         .width(spec.width)
                                         .groups(spec.groups));
  };
  // features.N convolutions (4-D weights) and BatchNorms (with running statistics) in
  // torchvision's order, and classifier.6; the convolution count gives the depth.
  family.recognise = [](const StateDict& state) -> std::string {
    if (!has_tensor(state, "classifier.6.weight") || !has_tensor(state, "classifier.0.weight")) {
      return "";
    }
    int64_t convs = 0;
    bool batch_norm = false;
    for (const auto& [name, tensor] : state) {
      if (name.rfind("features.", 0) != 0) continue;
      if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 &&
          tensor.dim() == 4) {
        ++convs;
      }
      if (name.find(".running_mean") != std::string::npos) batch_norm = true;
    }
    const std::map<int64_t, std::string> depths = {
        {8, "vgg11"}, {10, "vgg13"}, {13, "vgg16"}, {16, "vgg19"}};
    const auto it = depths.find(convs);
    if (it == depths.end()) return "";
    const std::string arch = it->second + (batch_norm ? "_bn" : "");
    // The layout must be exactly torchvision's (indices shift with BatchNorms).
    const std::vector<int64_t>& config = configuration(it->second);
    int64_t index = 0;
    for (const int64_t v : config) {
      if (v != kPool) {
        const torch::Tensor* weight =
            find_tensor(state, "features." + std::to_string(index) + ".weight");
        if (!weight || weight->dim() != 4 || weight->size(0) != v) return "";
        index += batch_norm ? 3 : 2;
      } else {
        index += 1;
      }
    }
    return arch;
  };
  // BackdoorBench builds these four with torchvision.models.X(num_classes=K), unchanged.
  for (const char* name : {"vgg11", "vgg16", "vgg19", "vgg19_bn"}) {
    family.foreign_names.emplace_back(name, name);
  }
  family.classifier_weight = [](const std::string&) { return std::string("classifier.6.weight"); };
  family.input_weight = [](const std::string&) { return std::string("features.0.weight"); };
  bind_model_methods<VggImpl>(family);
  return family;
}

}  // namespace nad::models
