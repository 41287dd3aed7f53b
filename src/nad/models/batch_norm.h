#pragma once
#include <torch/torch.h>

#include <optional>
#include <utility>

namespace nad::models {

// BatchNorm2d with LibTorch's parameter and buffer names (weight, bias, running_mean,
// running_var, num_batches_tracked: checkpoints are unchanged) and its exact forward, which in
// training mode within a distributed run started with --sync-bn normalises with the batch
// statistics of all ranks together, so that the model trains as one process would on the
// global batch. (Not a subclass of torch::nn::BatchNorm2dImpl: Debian's LibTorch does not
// export all of that class's virtual functions.)
class BatchNorm2dImpl : public torch::nn::Cloneable<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(int64_t num_features)
      : BatchNorm2dImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit BatchNorm2dImpl(const torch::nn::BatchNormOptions& options);
  void reset() override;
  void reset_running_stats();
  torch::Tensor forward(const torch::Tensor& input);
  // Evaluation mode as one affine map per channel, y = x * scale + shift (fp32, C each);
  // nullopt where it is not one (training mode, or no running statistics).
  std::optional<std::pair<torch::Tensor, torch::Tensor>> inference_affine() const;
  void pretty_print(std::ostream& stream) const override;

  torch::nn::BatchNormOptions options;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};
TORCH_MODULE(BatchNorm2d);

// Batch normalisation with statistics summed over ranks (the sync-bn path, exposed for tests);
// updates `bn`'s running statistics as LibTorch's batch norm does.
torch::Tensor synchronised_batch_norm(const torch::Tensor& input, BatchNorm2dImpl& bn);

}  // namespace nad::models
