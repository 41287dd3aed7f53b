#include "nad/models/inference.h"

#include <atomic>
#include <iterator>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace nad::models {

namespace {
std::atomic<bool> enabled{true};
}  // namespace

void set_inference_path_enabled(bool value) { enabled = value; }

bool takes_inference_path(const torch::nn::Module& module) {
  return enabled && !module.is_training() && !torch::GradMode::is_enabled();
}

namespace {

// The folded weight and bias of one convolution + BatchNorm pair, kept while none of the six
// tensors they come from changed: evaluating a model folds each pair once instead of once per
// batch. A tensor counts as unchanged when it is the same live tensor (a weak reference, so a
// freed and reallocated one never matches), on the same storage, at the same version (every
// in-place write, an optimiser step or a copy of weights, raises the version).
struct FoldKey {
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> tensor;
  const void* data = nullptr;
  uint32_t version = 0;
  c10::ScalarType dtype = c10::ScalarType::Undefined;

  explicit FoldKey(const torch::Tensor& t)
      : tensor(t.defined() ? c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(
                                 t.getIntrusivePtr())
                           : c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(
                                 c10::intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>())),
        data(t.defined() ? t.data_ptr() : nullptr),
        version(t.defined() ? t._version() : 0),
        dtype(t.defined() ? t.scalar_type() : c10::ScalarType::Undefined) {}

  bool matches(const torch::Tensor& t) const {
    if (!t.defined()) return data == nullptr && tensor.expired();
    return !tensor.expired() && tensor._unsafe_get_target() == t.unsafeGetTensorImpl() &&
           data == t.data_ptr() && version == t._version() && dtype == t.scalar_type();
  }
};

struct Fold {
  std::vector<FoldKey> sources;
  torch::Tensor weight, bias;
};

std::vector<torch::Tensor> fold_sources(const torch::nn::Conv2dImpl& conv,
                                        const BatchNorm2dImpl& bn) {
  return {conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var};
}

}  // namespace

torch::Tensor conv_then_batch_norm(const torch::nn::Conv2dImpl& conv, const BatchNorm2dImpl& bn,
                                   const torch::Tensor& input, int64_t padding) {
  // The condition under which bn.inference_affine() exists, checked before the cache is used.
  if (bn.is_training() || !bn.options.track_running_stats()) {
    throw std::logic_error("conv_then_batch_norm: BatchNorm not in evaluation mode");
  }
  // Per thread: the split evaluation runs one model copy's batches on each thread.
  thread_local std::unordered_map<const void*, Fold> folds;
  const void* key = conv.weight.unsafeGetTensorImpl();
  const std::vector<torch::Tensor> sources = fold_sources(conv, bn);
  Fold* fold = &folds[key];
  bool fresh = fold->sources.size() == sources.size();
  for (size_t i = 0; fresh && i < sources.size(); ++i) fresh = fold->sources[i].matches(sources[i]);
  if (!fresh) {
    // Models come and go (a search's clones, a teacher): drop the folds of freed ones (the
    // entry under `key` may be one, left by a freed convolution at the same address).
    for (auto it = folds.begin(); it != folds.end();) {
      it = !it->second.sources.empty() && it->second.sources[0].tensor.expired() ? folds.erase(it)
                                                                                 : std::next(it);
    }
    fold = &folds[key];
    const auto [scale, shift] = *bn.inference_affine();
    fold->weight = conv.weight * scale.view({-1, 1, 1, 1}).to(conv.weight.dtype());
    torch::Tensor bias = shift;
    if (conv.bias.defined()) bias = bias + conv.bias.to(torch::kFloat) * scale;
    fold->bias = bias.to(conv.weight.dtype());
    fold->sources.clear();
    for (const auto& t : sources) fold->sources.emplace_back(t);
  }
  return torch::conv2d(input, fold->weight, fold->bias, conv.options.stride(), padding,
                       conv.options.dilation(), conv.options.groups());
}

}  // namespace nad::models
