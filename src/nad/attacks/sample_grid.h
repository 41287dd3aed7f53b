#pragma once
#include <torch/torch.h>

#include <filesystem>

#include "nad/attacks/attack.h"
#include "nad/data/dataset.h"

namespace nad::attacks {

// A picture of what an attack does: one row per class, holding up to `pairs_per_row` pairs of
// (clean image, the same image triggered), the first images of that class in `images`. Each
// image is upscaled with nearest neighbour by the smallest whole factor that makes its
// shorter side at least `min_side` pixels. Cells are separated by grey lines, pairs by wider
// ones. Returns an H x W x C uint8 image (C of the dataset).
torch::Tensor sample_grid(const data::Dataset& images, const attacks::Attack& attack,
                          int64_t num_classes, int64_t pairs_per_row = 4, int64_t min_side = 96);

// sample_grid written as a PNG file.
void write_sample_grid(const std::filesystem::path& file, const data::Dataset& images,
                       const attacks::Attack& attack, int64_t num_classes);

}  // namespace nad::attacks
