#pragma once
#include <torch/torch.h>

#include <filesystem>

namespace nad::io {

// Writes a uint8, int64 or float32 tensor as a NumPy .npy file (format 1.0, C order), atomically,
// so that numpy.load and torch.from_numpy read exactly nad's arrays.
void write_npy(const std::filesystem::path& file, const torch::Tensor& tensor);

}  // namespace nad::io
