#include "nad/attacks/sample_grid.h"

#include <vector>

#include "nad/io/png.h"

namespace nad::attacks {

namespace {
constexpr uint8_t kBackground = 128;

// Pads an H x W x C image with `pad` background pixels on the given sides.
torch::Tensor pad(const torch::Tensor& image, int64_t top, int64_t bottom, int64_t left,
                  int64_t right) {
  const int64_t h = image.size(0), w = image.size(1), c = image.size(2);
  torch::Tensor out =
      torch::full({h + top + bottom, w + left + right, c}, kBackground, torch::kUInt8);
  out.slice(0, top, top + h).slice(1, left, left + w).copy_(image);
  return out;
}
}  // namespace

torch::Tensor sample_grid(const data::Dataset& images, const attacks::Attack& attack,
                          int64_t num_classes, int64_t pairs_per_row, int64_t min_side) {
  const int64_t h = images.height(), w = images.width(), c = images.channels();
  const int64_t side = std::min(h, w);
  const int64_t scale = std::max<int64_t>(1, (min_side + side - 1) / side);
  const int64_t gap = 2, pair_gap = 8;
  const torch::Tensor labels = images.labels.to(torch::kCPU);
  const torch::Tensor blank = torch::full({h * scale, w * scale, c}, kBackground, torch::kUInt8);

  std::vector<torch::Tensor> rows;
  for (int64_t k = 0; k < num_classes; ++k) {
    torch::Tensor idx = torch::nonzero(labels == k).flatten().slice(0, 0, pairs_per_row);
    torch::Tensor clean = images.images.index_select(0, idx.to(images.images.device()));
    torch::Tensor triggered = attack.apply(clean);
    clean = clean.to(torch::kCPU);
    triggered = triggered.to(torch::kCPU);
    std::vector<torch::Tensor> cells;
    for (int64_t p = 0; p < pairs_per_row; ++p) {
      for (int64_t t = 0; t < 2; ++t) {
        torch::Tensor cell = blank;
        if (p < idx.size(0)) {
          cell = (t == 0 ? clean : triggered)[p].repeat_interleave(scale, 0).repeat_interleave(
              scale, 1);
        }
        // A thin gap inside a pair, a wide one between pairs.
        cells.push_back(
            pad(cell, gap, gap, t == 0 ? pair_gap / 2 : gap / 2, t == 0 ? gap / 2 : pair_gap / 2));
      }
    }
    rows.push_back(torch::cat(cells, 1));
  }
  return torch::cat(rows, 0).contiguous();
}

void write_sample_grid(const std::filesystem::path& file, const data::Dataset& images,
                       const attacks::Attack& attack, int64_t num_classes) {
  io::write_png(file, sample_grid(images, attack, num_classes));
}

}  // namespace nad::attacks
