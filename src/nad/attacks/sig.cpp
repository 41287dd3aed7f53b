#include "nad/attacks/sig.h"

#include <cmath>

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

Sig::Sig(AttackOptions options, int64_t num_classes, int64_t height, int64_t width)
    : Attack(std::move(options), num_classes) {
  if (!(options_.delta >= 0 && options_.delta <= 255)) {
    throw UserError(flag::delta + " must be in [0, 255]");
  }
  if (!(options_.freq > 0)) throw UserError(flag::freq + " must be positive");
  torch::Tensor columns = torch::arange(width, torch::kDouble);
  signal_ =
      (options_.delta * torch::sin(2 * M_PI * columns * options_.freq / static_cast<double>(width)))
          .to(torch::kFloat);
}

torch::Tensor Sig::apply(const torch::Tensor& images) const {
  // 1 x 1 x W x 1: the same value down each column and on every channel.
  torch::Tensor signal = signal_.to(images.device()).view({1, 1, -1, 1});
  return (images.to(torch::kFloat) + signal).round().clamp(0, 255).to(torch::kUInt8);
}

}  // namespace nad::attacks
