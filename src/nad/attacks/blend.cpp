#include "nad/attacks/blend.h"

#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

Blend::Blend(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
             int64_t channels)
    : Attack(std::move(options), num_classes) {
  if (!(options_.alpha >= 0 && options_.alpha <= 1))
    throw UserError(flag::alpha + " must be in [0, 1]");
  if (options_.pattern_file.empty()) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(options_.pattern_seed);
    pattern_ = torch::randint(0, 256, {height, width, channels}, generator, torch::kUInt8);
  } else {
    torch::Tensor image = data::read_image(options_.pattern_file, static_cast<int>(channels));
    pattern_ = data::resize_image(image, height, width);
  }
}

torch::Tensor Blend::apply(const torch::Tensor& images) const {
  torch::Tensor pattern = pattern_.to(images.device()).to(torch::kFloat);
  torch::Tensor mixed = images.to(torch::kFloat) * (1 - options_.alpha) + pattern * options_.alpha;
  return mixed.round().clamp(0, 255).to(torch::kUInt8);
}

}  // namespace nad::attacks
