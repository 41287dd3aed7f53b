#include "nad/data/augment.h"

#include "nad/util/compute.h"
#include "nad/util/error.h"

namespace nad::data {

CutoutFill parse_cutout_fill(const std::string& name) {
  if (name == "zero") return CutoutFill::kZero;
  if (name == "noise") return CutoutFill::kNoise;
  throw UserError("unknown Cutout fill '" + name + "' (expected zero or noise)");
}

std::string cutout_fill_name(CutoutFill fill) {
  return fill == CutoutFill::kNoise ? "noise" : "zero";
}

namespace {
// Random draws are made on the CPU (so that both devices see the same numbers) and sent to a
// GPU from pinned memory without waiting: a plain copy would wait for all queued GPU work.
torch::Tensor to_device(const torch::Tensor& host, torch::Device device) {
  if (!device.is_cuda()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}
}  // namespace

torch::Tensor augment_batch(const torch::Tensor& images, const AugmentOptions& options,
                            at::Generator& generator) {
  const int64_t n = images.size(0), h = images.size(1), w = images.size(2);
  const auto device = images.device();
  const auto long_on_device = torch::TensorOptions().dtype(torch::kLong).device(device);
  torch::Tensor out = images;

  if (options.crop_padding > 0) {
    const int64_t p = options.crop_padding;
    torch::Tensor padded = torch::constant_pad_nd(images, {0, 0, p, p, p, p}, 0);
    torch::Tensor dy =
        to_device(torch::randint(0, 2 * p + 1, {n, 1}, generator, torch::kLong), device);
    torch::Tensor dx =
        to_device(torch::randint(0, 2 * p + 1, {n, 1}, generator, torch::kLong), device);
    torch::Tensor rows = dy + torch::arange(h, long_on_device).unsqueeze(0);  // N x H
    torch::Tensor cols = dx + torch::arange(w, long_on_device).unsqueeze(0);  // N x W
    torch::Tensor batch = torch::arange(n, long_on_device).view({n, 1, 1});
    out = padded.index({batch, rows.unsqueeze(2), cols.unsqueeze(1)});  // N x H x W x C
  }
  if (options.horizontal_flip) {
    torch::Tensor flip = to_device(torch::rand({n}, generator) < 0.5, device).view({n, 1, 1, 1});
    out = torch::where(flip, out.flip({2}), out);
  }
  if (options.cutout_holes > 0) {
    // As in the reference Cutout: the hole spans [c - L/2, c + L/2) clipped to the image.
    const int64_t half = options.cutout_length / 2;
    torch::Tensor keep =
        torch::ones({n, h, w}, torch::TensorOptions().dtype(torch::kBool).device(device));
    torch::Tensor r = torch::arange(h, long_on_device).view({1, h, 1});
    torch::Tensor c = torch::arange(w, long_on_device).view({1, 1, w});
    for (int64_t hole = 0; hole < options.cutout_holes; ++hole) {
      torch::Tensor cy =
          to_device(torch::randint(0, h, {n}, generator, torch::kLong), device).view({n, 1, 1});
      torch::Tensor cx =
          to_device(torch::randint(0, w, {n}, generator, torch::kLong), device).view({n, 1, 1});
      keep &= ~((r >= cy - half) & (r < cy + half) & (c >= cx - half) & (c < cx + half));
    }
    if (options.cutout_fill == CutoutFill::kNoise) {
      // Drawn as uint8 directly: the same numbers as drawn as int64 (one 32-bit draw each),
      // in an eighth of the memory, and measured 2.5x faster on the CPU than int64 + conversion.
      torch::Tensor noise = to_device(
          torch::randint(0, 256, out.sizes(), generator, torch::kUInt8).to(out.dtype()), device);
      out = torch::where(keep.unsqueeze(-1), out, noise);
    } else {
      out = out * keep.unsqueeze(-1).to(out.dtype());
    }
  }
  return out;
}

torch::Tensor to_input(const torch::Tensor& images) {
  // Images are stored N x H x W x C, so the channels-last layout costs no copy.
  return to_memory_format(images.permute({0, 3, 1, 2}).to(torch::kFloat).div_(255.0));
}

}  // namespace nad::data
