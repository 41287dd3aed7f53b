#include "nad/models/mnist_cnn.h"

#include "nad/models/registry.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::models {
namespace nn = torch::nn;

MnistCnnImpl::MnistCnnImpl(const MnistCnnOptions& options) {
  conv1_ = register_module("conv1",
                           nn::Conv2d(nn::Conv2dOptions(options.in_channels(), 32, 3).padding(1)));
  conv2_ = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)));
  const int64_t flat = 64 * (options.height() / 4) * (options.width() / 4);
  fc1_ = register_module("fc1", nn::Linear(flat, 128));
  fc2_ = register_module("fc2", nn::Linear(128, options.num_classes()));
}

ModelOutput MnistCnnImpl::forward_normalised(const torch::Tensor& inputs) {
  ModelOutput out;
  torch::Tensor x = torch::relu(conv1_->forward(inputs));
  out.features.push_back(x);
  x = torch::relu(conv2_->forward(torch::max_pool2d(x, 2)));
  out.features.push_back(x);
  x = torch::max_pool2d(x, 2).flatten(1);
  out.logits = fc2_->forward(torch::relu(fc1_->forward(x)));
  return out;
}

ArchFamily mnist_cnn_family() {
  ArchFamily family;
  family.names = {"mnist-cnn"};
  family.build = [](const ModelSpec& spec) -> Classifier {
    if (spec.height % 4 != 0 || spec.width % 4 != 0) {
      throw UserError(flag::arch + " mnist-cnn needs image sides divisible by 4");
    }
    return std::make_shared<MnistCnnImpl>(MnistCnnOptions()
                                              .in_channels(spec.in_channels)
                                              .num_classes(spec.num_classes)
                                              .height(spec.height)
                                              .width(spec.width));
  };
  family.recognise = [](const StateDict& state) -> std::string {
    for (const char* name : {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}) {
      if (!has_tensor(state, name)) return "";
    }
    return "mnist-cnn";
  };
  family.classifier_weight = [](const std::string&) { return std::string("fc2.weight"); };
  family.input_weight = [](const std::string&) { return std::string("conv1.weight"); };
  bind_model_methods<MnistCnnImpl>(family);
  return family;
}

}  // namespace nad::models
