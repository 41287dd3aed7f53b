#include "nad/attacks/badnets.h"

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

namespace {
// The reference grid, indexed [rows up from the bottom][columns left from the right].
constexpr uint8_t kGrid[3][3] = {{255, 0, 255}, {0, 255, 0}, {255, 0, 0}};
}  // namespace

BadNets::BadNets(AttackOptions options, int64_t num_classes, int64_t height, int64_t width)
    : Attack(std::move(options), num_classes) {
  const std::string& trigger = options_.trigger;
  if (trigger != "grid" && trigger != "square" && trigger != "four-corner") {
    throw UserError(flag::trigger + " must be grid, square or four-corner, not '" + trigger + "'");
  }
  if (height < 6 || width < 6) throw UserError("BadNets needs images of at least 6x6 pixels");
  mask_ = torch::zeros({height, width}, torch::kBool);
  values_ = torch::zeros({height, width}, torch::kUInt8);
  auto mask = mask_.accessor<bool, 2>();
  auto values = values_.accessor<uint8_t, 2>();
  auto stamp = [&](bool flip_rows, bool flip_cols) {
    for (int up = 0; up < 3; ++up) {
      for (int left = 0; left < 3; ++left) {
        const int64_t r = flip_rows ? up : height - 1 - up;
        const int64_t c = flip_cols ? left : width - 1 - left;
        mask[r][c] = true;
        values[r][c] = trigger == "square" ? 255 : kGrid[up][left];
      }
    }
  };
  stamp(false, false);
  if (trigger == "four-corner") {
    // Mirror images of the bottom-right pattern, as in the clean-label attack's trigger.
    stamp(false, true);
    stamp(true, false);
    stamp(true, true);
  }
}

torch::Tensor BadNets::apply(const torch::Tensor& images) const {
  const auto device = images.device();
  torch::Tensor mask = mask_.to(device).unsqueeze(0).unsqueeze(-1);
  torch::Tensor values = values_.to(device).unsqueeze(0).unsqueeze(-1);
  return torch::where(mask, values, images);
}

}  // namespace nad::attacks
