#include "nad/attacks/wanet.h"

#include <cmath>

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

namespace F = torch::nn::functional;

namespace {

// N x H x W x C uint8 images resampled at `grid` (N x H x W x 2), rounded back to uint8.
torch::Tensor warp(const torch::Tensor& images, const torch::Tensor& grid) {
  torch::Tensor input = images.permute({0, 3, 1, 2}).to(torch::kFloat);
  torch::Tensor out = F::grid_sample(input, grid,
                                     F::GridSampleFuncOptions()
                                         .mode(torch::kBilinear)
                                         .padding_mode(torch::kZeros)
                                         .align_corners(true));
  return out.permute({0, 2, 3, 1}).round().clamp(0, 255).to(torch::kUInt8).contiguous();
}

}  // namespace

WaNet::WaNet(AttackOptions options, int64_t num_classes, int64_t height, int64_t width)
    : Attack(std::move(options), num_classes) {
  if (options_.grid_k < 2) throw UserError(flag::grid_k + " must be at least 2");
  if (options_.grid_k > std::min(height, width)) {
    throw UserError(flag::grid_k + " must not exceed the image side (" +
                    std::to_string(std::min(height, width)) + ")");
  }
  if (!(options_.strength >= 0)) throw UserError(flag::strength + " must be non-negative");
  if (!(options_.cross_ratio >= 0)) throw UserError(flag::cross_ratio + " must be non-negative");
  const int64_t k = options_.grid_k;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options_.pattern_seed);
  torch::Tensor control = torch::rand({1, 2, k, k}, generator, torch::kFloat) * 2 - 1;
  control = control / control.abs().mean();
  torch::Tensor noise = F::interpolate(control, F::InterpolateFuncOptions()
                                                    .size(std::vector<int64_t>{height, width})
                                                    .mode(torch::kBicubic)
                                                    .align_corners(true))
                            .permute({0, 2, 3, 1});  // 1 x H x W x 2
  torch::Tensor ys = torch::linspace(-1, 1, height, torch::kFloat);
  torch::Tensor xs = torch::linspace(-1, 1, width, torch::kFloat);
  torch::Tensor identity =
      torch::stack(
          {xs.view({1, -1}).expand({height, width}), ys.view({-1, 1}).expand({height, width})}, 2)
          .unsqueeze(0);
  grid_ = (identity + noise * (options_.strength / static_cast<double>(height))).clamp(-1, 1);
}

torch::Tensor WaNet::apply(const torch::Tensor& images) const {
  if (images.size(0) == 0) return images.clone();
  torch::Tensor grid = grid_.to(images.device()).expand({images.size(0), -1, -1, -1});
  return warp(images, grid);
}

torch::Tensor WaNet::apply_with_noise(const torch::Tensor& images, at::Generator& generator) const {
  if (images.size(0) == 0) return images.clone();
  const int64_t n = images.size(0), h = grid_.size(1), w = grid_.size(2);
  torch::Tensor noise = torch::rand({n, h, w, 2}, generator, torch::kFloat) * 2 - 1;
  torch::Tensor grid = (grid_ + noise / static_cast<double>(h)).clamp(-1, 1);
  return warp(images, grid.to(images.device()));
}

PoisonedSet WaNet::poison(const data::Dataset& train, uint64_t seed) const {
  PoisonedSet out = Attack::poison(train, seed);
  // Noise-mode rows come from the rows left unpoisoned, with a generator of their own.
  torch::Tensor free = torch::ones({train.size()}, torch::kBool);
  free.index_fill_(0, out.indices, false);
  torch::Tensor candidates = torch::nonzero(free).flatten();
  const int64_t count = std::min<int64_t>(
      candidates.size(0),
      std::llround(options_.cross_ratio * static_cast<double>(out.indices.size(0))));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x9e3779b97f4a7c15ULL);
  torch::Tensor order = torch::randperm(candidates.size(0), generator, torch::kLong);
  out.noise_indices = std::get<0>(candidates.index_select(0, order.slice(0, 0, count)).sort());
  if (count > 0) {
    out.data.images.index_copy_(
        0, out.noise_indices,
        apply_with_noise(train.images.index_select(0, out.noise_indices), generator));
  }
  return out;
}

}  // namespace nad::attacks
