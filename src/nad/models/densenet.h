#pragma once
#include <string>
#include <vector>

#include "nad/models/batch_norm.h"
#include "nad/models/classifier.h"

namespace nad::models {

// torchvision's _DenseLayer: norm1, ReLU, conv1 (1x1 to 4 x growth), norm2, ReLU, conv2 (3x3 to
// growth) on the concatenation of the block's input and every earlier layer's output.
class DenseLayerImpl : public torch::nn::Module {
 public:
  DenseLayerImpl(int64_t in, int64_t growth, int64_t bottleneck);
  torch::Tensor forward(const torch::Tensor& concatenated);

 private:
  BatchNorm2d norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
};
TORCH_MODULE(DenseLayer);

// torchvision's _DenseBlock (denselayer1..N); its output concatenates its input and every
// layer's output.
class DenseBlockImpl : public torch::nn::Module {
 public:
  DenseBlockImpl(int64_t layers, int64_t in, int64_t growth, int64_t bottleneck);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<DenseLayer> layers_;
};
TORCH_MODULE(DenseBlock);

struct DenseNetOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, height) = 32;
  TORCH_ARG(int64_t, width) = 32;
  // Attention groups by stage name (--groups); empty: the default choice.
  TORCH_ARG(std::vector<std::string>, groups) = {};
};

// torchvision.models.densenet121: `features.conv0/norm0` (7x7 stride 2), a 3x3 stride-2
// max-pool, `features.denseblock1..4` (6, 12, 24, 16 layers, growth 32) with
// `features.transition1..3` (norm, ReLU, 1x1 conv halving the width, 2x2 average pool) between
// them, `features.norm5`, ReLU, global average pooling, `classifier`. Attention groups: the
// dense blocks' outputs, the (at most three) deepest whose maps are larger than 1x1.
class DenseNetImpl : public ClassifierImpl {
 public:
  explicit DenseNetImpl(const DenseNetOptions& options);
  ModelOutput forward_normalised(const torch::Tensor& inputs) override;
  std::vector<std::string> group_names() const override;
  std::vector<double> default_betas() const;
  // The next transition's convolution (after its BatchNorm and ReLU), or the classifier.
  std::vector<std::string> group_consumers(size_t group) const;

 private:
  std::vector<size_t> groups_;  // dense block indices (0..3)
  torch::nn::Conv2d conv0_{nullptr};
  BatchNorm2d norm0_{nullptr}, norm5_{nullptr};
  DenseBlock blocks_[4] = {nullptr, nullptr, nullptr, nullptr};
  BatchNorm2d transition_norms_[3] = {nullptr, nullptr, nullptr};
  torch::nn::Conv2d transition_convs_[3] = {nullptr, nullptr, nullptr};
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(DenseNet);

}  // namespace nad::models
