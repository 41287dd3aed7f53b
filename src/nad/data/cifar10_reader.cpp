#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 32;
constexpr int64_t kPixelBytes = 3 * kSide * kSide;
constexpr int64_t kRecordBytes = 1 + kPixelBytes;  // label byte, then R, G and B planes
constexpr int64_t kClasses = 10;

}  // namespace

Dataset read_cifar10_batch(const fs::path& file) {
  if (!fs::is_regular_file(file)) throw UserError("missing CIFAR-10 batch '" + file.string() + "'");
  // The size decides the record count: check it before reading anything.
  std::error_code ec;
  const uintmax_t on_disk = fs::file_size(file, ec);
  if (!ec && (on_disk == 0 || on_disk % kRecordBytes != 0)) {
    throw UserError("'" + file.string() + "' is not a CIFAR-10 batch: its size " +
                    std::to_string(on_disk) + " is not a positive multiple of the " +
                    std::to_string(kRecordBytes) +
                    "-byte record (1 label byte, 3072 pixel bytes): truncated?");
  }
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size == 0 || size % kRecordBytes != 0) {
    throw UserError("'" + file.string() + "' is not a CIFAR-10 batch: its size " +
                    std::to_string(size) + " is not a positive multiple of the " +
                    std::to_string(kRecordBytes) +
                    "-byte record (1 label byte, 3072 pixel bytes): truncated?");
  }
  const int64_t count = size / kRecordBytes;
  // Labels first, so a bad one is reported before the pixels are allocated.
  Dataset batch;
  batch.labels = torch::empty({count}, torch::kInt64);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const unsigned char label = bytes[static_cast<size_t>(i * kRecordBytes)];
    if (label >= kClasses) {
      throw UserError("'" + file.string() + "': record " + std::to_string(i) + " (byte offset " +
                      std::to_string(i * kRecordBytes) + ") has label " + std::to_string(label) +
                      " (CIFAR-10 labels are 0-9)");
    }
    labels[i] = label;
  }
  torch::Tensor chw = torch::empty({count, 3, kSide, kSide}, torch::kUInt8);
  uint8_t* pixels = chw.data_ptr<uint8_t>();
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(pixels + i * kPixelBytes, bytes.data() + i * kRecordBytes + 1, kPixelBytes);
  }
  // The files store planes (CHW); the rest of the tool wants HWC.
  batch.images = chw.permute({0, 2, 3, 1}).contiguous();
  return batch;
}

namespace {

Dataset read_batches(const std::vector<fs::path>& files) {
  std::vector<torch::Tensor> images, labels;
  for (const fs::path& file : files) {
    Dataset batch = read_cifar10_batch(file);
    images.push_back(batch.images);
    labels.push_back(batch.labels);
  }
  Dataset out;
  out.images = images.size() == 1 ? images[0] : torch::cat(images);
  out.labels = labels.size() == 1 ? labels[0] : torch::cat(labels);
  return out;
}

}  // namespace

DatasetPair read_cifar10_binary(const fs::path& dir) {
  fs::path root = dir;
  if (!fs::exists(root / "data_batch_1.bin") && fs::is_directory(dir / "cifar-10-batches-bin")) {
    root = dir / "cifar-10-batches-bin";
  }
  DatasetPair pair;
  pair.name = "cifar10";
  pair.class_names = {"airplane", "automobile", "bird",  "cat",  "deer",
                      "dog",      "frog",       "horse", "ship", "truck"};
  pair.natural_hflip = true;
  std::vector<fs::path> train_files;
  for (int i = 1; i <= 5; ++i)
    train_files.push_back(root / ("data_batch_" + std::to_string(i) + ".bin"));
  pair.train = read_batches(train_files);
  pair.test = read_batches({root / "test_batch.bin"});
  return pair;
}

}  // namespace nad::data
