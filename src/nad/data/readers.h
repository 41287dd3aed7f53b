#pragma once
#include <filesystem>
#include <string>

#include "nad/data/dataset.h"

// One reader per on-disk format. Each throws nad::UserError naming the offending file.
namespace nad::data {

// IDX image + label files (MNIST layout), gzipped or not.
Dataset read_idx(const std::filesystem::path& images_file,
                 const std::filesystem::path& labels_file);
// A folder holding train-images-idx3-ubyte[.gz] and the three other standard files.
DatasetPair read_mnist_folder(const std::filesystem::path& dir, const std::string& name);

// CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin), in `dir` or in
// `dir/cifar-10-batches-bin`.
DatasetPair read_cifar10_binary(const std::filesystem::path& dir);

// GTSRB official layout, every image resized to 32 x 32.
DatasetPair read_gtsrb(const std::filesystem::path& dir);

// train/<class>/* and test/<class>/*; classes in sorted order; image_size > 0 resizes.
DatasetPair read_image_folder(const std::filesystem::path& dir, int image_size,
                              const std::string& name);

// A PPM (P6, 8-bit, comments allowed) as H x W x 3 uint8.
torch::Tensor read_ppm(const std::filesystem::path& file);
// Any PNG, JPEG, BMP or PPM file as H x W x C uint8, C = `channels` (1 or 3).
torch::Tensor read_image(const std::filesystem::path& file, int channels);
// Bilinear resize of an H x W x C uint8 image.
torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width);

}  // namespace nad::data
