#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <vector>

namespace nad::io {

// PNG bytes of an H x W x C uint8 image (C = 1, 3 or 4).
std::vector<unsigned char> encode_png(const torch::Tensor& image);
// Writes the image as a PNG file, atomically.
void write_png(const std::filesystem::path& file, const torch::Tensor& image);

}  // namespace nad::io
