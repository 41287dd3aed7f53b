#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "nad/data/dataset.h"
#include "nad/models/classifier.h"
#include "nad/train/records.h"

namespace nad::train {

// Evaluation batch size. Small batches keep a WRN-16-1's activations in cache: on the 2-core
// CI machine 16-64 images per batch evaluated CIFAR-10 about 1.5-2.5x faster than 500
// (nad_bench eval; PyTorch 1.13 also measured fastest at 64).
inline constexpr int64_t kEvalBatchSize = 64;
// On a GPU a batch of 64 is mostly launch overhead; PyTorch ran WRN-16-1 inference fastest at
// 1024 on the H200 (325,000 images/s).
inline constexpr int64_t kCudaEvalBatchSize = 1024;
inline int64_t default_eval_batch_size(torch::Device device) {
  return device.is_cuda() ? kCudaEvalBatchSize : kEvalBatchSize;
}

// Predicted labels for uint8 N x H x W x C images, in eval mode and batches.
torch::Tensor predict(const models::Classifier& model, const torch::Tensor& images,
                      int64_t batch_size);

// The logits (float32, N x classes) of uint8 N x H x W x C images (N > 0), in eval mode and
// batches; predict() is their argmax.
torch::Tensor predict_logits(const models::Classifier& model, const torch::Tensor& images,
                             int64_t batch_size);

// Percent of `images` predicted as `labels`.
double accuracy(const models::Classifier& model, const data::Dataset& set, int64_t batch_size);

// Holds the clean test set and, when given, a triggered test set (an attack's, or images someone
// else triggered), both copied once to the target device, and measures a model on them.
class Evaluator {
 public:
  Evaluator(const data::Dataset& test, const data::TriggeredSet* triggered, torch::Device device,
            int64_t batch_size = kEvalBatchSize);
  Metrics operator()(const models::Classifier& model) const;
  const data::Dataset& clean() const { return clean_; }
  bool has_attack() const { return has_attack_; }

 private:
  data::Dataset clean_;
  bool has_attack_ = false;
  data::Dataset triggered_;
  torch::Tensor attack_targets_;
  int64_t batch_size_;
};

}  // namespace nad::train
