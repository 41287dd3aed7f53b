#include "nad/models/batch_norm.h"

#include "nad/dist/process_group.h"

namespace nad::models {

BatchNorm2dImpl::BatchNorm2dImpl(const torch::nn::BatchNormOptions& options_) : options(options_) {
  reset();
}

// Registration order and initial values as torch::nn::BatchNorm2d.
void BatchNorm2dImpl::reset() {
  const int64_t n = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", torch::ones({n}));
    bias = register_parameter("bias", torch::zeros({n}));
  } else {
    weight = register_parameter("weight", torch::Tensor(), /*requires_grad=*/false);
    bias = register_parameter("bias", torch::Tensor(), /*requires_grad=*/false);
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", torch::zeros({n}));
    running_var = register_buffer("running_var", torch::ones({n}));
    num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
  } else {
    running_mean = register_buffer("running_mean", torch::Tensor());
    running_var = register_buffer("running_var", torch::Tensor());
    num_batches_tracked = register_buffer("num_batches_tracked", torch::Tensor());
  }
}

void BatchNorm2dImpl::reset_running_stats() {
  if (!options.track_running_stats()) return;
  torch::NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

torch::Tensor BatchNorm2dImpl::forward(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "BatchNorm2d expects N x C x H x W input, got ", input.dim(),
              " dimensions");
  if (is_training() && dist::is_distributed() && dist::options().sync_batch_norm) {
    return synchronised_batch_norm(input, *this);
  }
  // LibTorch's BatchNormImplBase::forward.
  double average_factor = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats() && num_batches_tracked.defined()) {
    num_batches_tracked += 1;
    if (!options.momentum().has_value()) {
      average_factor = 1.0 / num_batches_tracked.item<double>();
    }
  }
  return torch::batch_norm(input, weight, bias, running_mean, running_var,
                           is_training() || !options.track_running_stats(), average_factor,
                           options.eps(), at::globalContext().userEnabledCuDNN());
}

std::optional<std::pair<torch::Tensor, torch::Tensor>> BatchNorm2dImpl::inference_affine() const {
  if (is_training() || !options.track_running_stats()) return std::nullopt;
  torch::NoGradGuard no_grad;
  torch::Tensor scale = torch::rsqrt(running_var.to(torch::kFloat) + options.eps());
  torch::Tensor shift = -running_mean.to(torch::kFloat) * scale;
  if (options.affine()) {
    scale = scale * weight.to(torch::kFloat);
    shift = shift * weight.to(torch::kFloat) + bias.to(torch::kFloat);
  }
  return std::make_pair(scale, shift);
}

void BatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "BatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
         << ", momentum=" << options.momentum().value_or(0.0) << ", affine=" << options.affine()
         << ")";
}

torch::Tensor synchronised_batch_norm(const torch::Tensor& input, BatchNorm2dImpl& bn) {
  TORCH_CHECK(input.dim() == 4, "BatchNorm2d expects N x C x H x W input");
  const torch::Tensor x = input.to(torch::kFloat);
  const int64_t channels = x.size(1);
  const std::vector<int64_t> reduce = {0, 2, 3};
  const std::vector<int64_t> shape = {1, channels, 1, 1};
  // Two passes over ranks, each a differentiable sum (its backward sums the gradients over ranks
  // too, so they reach every rank's inputs as in one process): the sums and the element count
  // give the mean, then the squared deviations from it give the variance. (One pass with the
  // sums of squares loses precision to cancellation where a channel's variance is small next to
  // its mean.)
  torch::Tensor local = torch::cat(
      {x.sum(reduce), torch::full({1}, static_cast<double>(x.numel() / channels), x.options())});
  torch::Tensor global = dist::differentiable_all_reduce_sum(local);
  torch::Tensor count = global.slice(0, channels, channels + 1);
  torch::Tensor mean = global.slice(0, 0, channels) / count;
  torch::Tensor centred = x - mean.view(shape);
  torch::Tensor var = dist::differentiable_all_reduce_sum((centred * centred).sum(reduce)) / count;
  torch::Tensor out = centred * torch::rsqrt(var.view(shape) + bn.options.eps());
  if (bn.options.affine()) out = out * bn.weight.view(shape) + bn.bias.view(shape);

  if (bn.options.track_running_stats()) {
    torch::NoGradGuard no_grad;
    const double n = count.item<double>();
    bn.num_batches_tracked.add_(1);
    const double momentum = bn.options.momentum().has_value()
                                ? *bn.options.momentum()
                                : 1.0 / bn.num_batches_tracked.item<double>();
    bn.running_mean.mul_(1 - momentum).add_(mean.detach().to(bn.running_mean.dtype()), momentum);
    // The running variance is unbiased, as in LibTorch's own batch norm.
    bn.running_var.mul_(1 - momentum)
        .add_((var.detach() * (n / std::max(1.0, n - 1))).to(bn.running_var.dtype()), momentum);
  }
  return out.to(input.scalar_type());
}

}  // namespace nad::models
