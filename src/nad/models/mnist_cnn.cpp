#include "nad/models/mnist_cnn.h"

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

ModelOutput MnistCnnImpl::forward(const torch::Tensor& inputs) {
  ModelOutput out;
  torch::Tensor x = torch::relu(conv1_->forward(inputs));
  out.features.push_back(x);
  x = torch::relu(conv2_->forward(torch::max_pool2d(x, 2)));
  out.features.push_back(x);
  x = torch::max_pool2d(x, 2).flatten(1);
  out.logits = fc2_->forward(torch::relu(fc1_->forward(x)));
  return out;
}

}  // namespace nad::models
