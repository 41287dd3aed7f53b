#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 32;
constexpr int64_t kPixelBytes = 3 * kSide * kSide;
constexpr int64_t kRecordBytes = 2 + kPixelBytes;  // coarse, fine, then R, G and B planes
constexpr int64_t kFineClasses = 100;
constexpr int64_t kCoarseClasses = 20;

std::string size_error(const std::string& file, uintmax_t size) {
  return "'" + file + "' is not a CIFAR-100 file: its size " + std::to_string(size) +
         " is not a positive multiple of the " + std::to_string(kRecordBytes) +
         "-byte record (coarse label byte, fine label byte, 3072 pixel bytes): truncated?";
}

// The class names of one label kind: `file` when it exists (one name per line, trailing blank
// lines allowed), else the numbers.
std::vector<std::string> label_names(const fs::path& file, int64_t count) {
  std::vector<std::string> names;
  if (!fs::exists(file)) {
    for (int64_t k = 0; k < count; ++k) names.push_back(std::to_string(k));
    return names;
  }
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  const std::string text(bytes.begin(), bytes.end());
  size_t start = 0, blank_line = 0, line_number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string name = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
    if (name.empty()) {
      if (blank_line == 0) blank_line = line_number;
      continue;
    }
    if (blank_line != 0) {
      throw UserError("'" + file.string() + "' line " + std::to_string(blank_line) +
                      ": empty class name");
    }
    if (static_cast<int64_t>(names.size()) == count) {
      throw UserError("'" + file.string() + "' line " + std::to_string(line_number) +
                      ": more than " + std::to_string(count) + " class names");
    }
    names.push_back(name);
  }
  if (static_cast<int64_t>(names.size()) != count) {
    throw UserError("'" + file.string() + "' has " + std::to_string(names.size()) +
                    " class names, expected " + std::to_string(count));
  }
  return names;
}

}  // namespace

Cifar100Batch parse_cifar100_records(const unsigned char* bytes, size_t size,
                                     const std::string& file) {
  if (size == 0 || size % kRecordBytes != 0) throw UserError(size_error(file, size));
  const int64_t count = static_cast<int64_t>(size) / kRecordBytes;
  // Labels first, so a bad one is reported before the pixels are allocated.
  Cifar100Batch batch;
  batch.coarse_labels = torch::empty({count}, torch::kInt64);
  batch.fine_labels = torch::empty({count}, torch::kInt64);
  int64_t* coarse = batch.coarse_labels.data_ptr<int64_t>();
  int64_t* fine = batch.fine_labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const unsigned char* record = bytes + i * kRecordBytes;
    const auto check = [&](unsigned char label, int64_t classes, const char* kind) {
      if (label < classes) return;
      throw UserError("'" + file + "': record " + std::to_string(i) + " (byte offset " +
                      std::to_string(i * kRecordBytes) + ") has " + kind + " label " +
                      std::to_string(label) + " (CIFAR-100 " + kind + " labels are 0-" +
                      std::to_string(classes - 1) + ")");
    };
    check(record[0], kCoarseClasses, "coarse");
    check(record[1], kFineClasses, "fine");
    coarse[i] = record[0];
    fine[i] = record[1];
  }
  torch::Tensor chw = torch::empty({count, 3, kSide, kSide}, torch::kUInt8);
  uint8_t* pixels = chw.data_ptr<uint8_t>();
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(pixels + i * kPixelBytes, bytes + i * kRecordBytes + 2, kPixelBytes);
  }
  // The files store planes (CHW); the rest of the tool wants HWC.
  batch.images = chw.permute({0, 2, 3, 1}).contiguous();
  return batch;
}

Cifar100Batch read_cifar100_file(const fs::path& file) {
  if (!fs::is_regular_file(file)) throw UserError("missing CIFAR-100 file '" + file.string() + "'");
  // The size decides the record count: check it before reading anything.
  std::error_code ec;
  const uintmax_t on_disk = fs::file_size(file, ec);
  if (!ec && (on_disk == 0 || on_disk % kRecordBytes != 0)) {
    throw UserError(size_error(file.string(), on_disk));
  }
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  return parse_cifar100_records(bytes.data(), bytes.size(), file.string());
}

DatasetPair read_cifar100_binary(const fs::path& dir, bool coarse) {
  fs::path root = dir;
  if (!fs::exists(root / "train.bin") && fs::is_directory(dir / "cifar-100-binary")) {
    root = dir / "cifar-100-binary";
  }
  DatasetPair pair;
  pair.name = "cifar100";
  pair.natural_hflip = true;
  pair.class_names = coarse ? label_names(root / "coarse_label_names.txt", kCoarseClasses)
                            : label_names(root / "fine_label_names.txt", kFineClasses);
  for (const auto& [split, name] :
       {std::pair<Dataset*, const char*>{&pair.train, "train.bin"}, {&pair.test, "test.bin"}}) {
    Cifar100Batch batch = read_cifar100_file(root / name);
    split->images = batch.images;
    split->labels = coarse ? batch.coarse_labels : batch.fine_labels;
  }
  return pair;
}

}  // namespace nad::data
