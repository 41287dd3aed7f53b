#include <cstring>
#include <string>
#include <vector>

#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kImagesMagic = 2051;  // 0x00000803: unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 2049;  // 0x00000801: unsigned byte, 1 dimension

uint32_t read_be32(const std::vector<unsigned char>& bytes, size_t offset) {
  return (static_cast<uint32_t>(bytes[offset]) << 24) |
         (static_cast<uint32_t>(bytes[offset + 1]) << 16) |
         (static_cast<uint32_t>(bytes[offset + 2]) << 8) | static_cast<uint32_t>(bytes[offset + 3]);
}

// Parses an unsigned-byte IDX file whose header must carry `magic`; returns its dimensions
// and leaves the payload after `header_size` bytes of `bytes`.
std::vector<int64_t> parse_idx_header(const std::vector<unsigned char>& bytes, uint32_t magic,
                                      const fs::path& file, const char* what) {
  const size_t rank = magic & 0xff;
  const size_t header_size = 4 + 4 * rank;
  if (bytes.size() < header_size) {
    throw UserError("'" + file.string() + "' is too short to be an IDX " + what + " file");
  }
  const uint32_t found = read_be32(bytes, 0);
  if (found != magic) {
    throw UserError("'" + file.string() + "' is not an IDX " + what + " file (magic " +
                    std::to_string(found) + ", expected " + std::to_string(magic) + ")");
  }
  std::vector<int64_t> dims;
  int64_t payload = 1;
  for (size_t i = 0; i < rank; ++i) {
    const int64_t dim = read_be32(bytes, 4 + 4 * i);
    // Every dimension but the count must be positive; the product must stay sane.
    if ((dim == 0 && i > 0) || dim > (int64_t{1} << 31)) {
      throw UserError("'" + file.string() + "': bad IDX dimension " + std::to_string(dim));
    }
    payload *= dim;
    if (payload > (int64_t{1} << 40)) {
      throw UserError("'" + file.string() + "': IDX dimensions are implausibly large");
    }
    dims.push_back(dim);
  }
  const int64_t actual = static_cast<int64_t>(bytes.size() - header_size);
  if (actual != payload) {
    throw UserError("'" + file.string() + "': IDX header promises " + std::to_string(payload) +
                    " bytes of data but the file has " + std::to_string(actual) +
                    (actual < payload ? " (truncated)" : " (trailing bytes)"));
  }
  return dims;
}

// Names tried for one standard MNIST file: `stem` with '-' or '.' before "idx", gzipped
// or not.
fs::path find_mnist_file(const fs::path& dir, const std::string& prefix, const std::string& idx) {
  std::vector<fs::path> tried;
  for (const char* sep : {"-", "."}) {
    for (const char* ext : {"", ".gz"}) {
      fs::path candidate = dir / (prefix + sep + idx + ext);
      if (fs::is_regular_file(candidate)) return candidate;
      tried.push_back(candidate);
    }
  }
  throw UserError("missing '" + tried[0].string() + "' (also tried .gz and '" + prefix + "." + idx +
                  "' variants)");
}

void check_labels_below(const torch::Tensor& labels, int64_t classes, const fs::path& file) {
  if (labels.numel() > 0 && labels.max().item<int64_t>() >= classes) {
    throw UserError("'" + file.string() + "' has label " +
                    std::to_string(labels.max().item<int64_t>()) + " but the dataset has " +
                    std::to_string(classes) + " classes");
  }
}

}  // namespace

Dataset read_idx(const fs::path& images_file, const fs::path& labels_file) {
  const std::vector<unsigned char> image_bytes = read_maybe_gzip(images_file);
  const std::vector<int64_t> dims =
      parse_idx_header(image_bytes, kImagesMagic, images_file, "images");
  const std::vector<unsigned char> label_bytes = read_maybe_gzip(labels_file);
  const std::vector<int64_t> count =
      parse_idx_header(label_bytes, kLabelsMagic, labels_file, "labels");
  if (dims[0] != count[0]) {
    throw UserError("'" + images_file.string() + "' has " + std::to_string(dims[0]) +
                    " images but '" + labels_file.string() + "' has " + std::to_string(count[0]) +
                    " labels");
  }
  Dataset data;
  data.images = torch::empty({dims[0], dims[1], dims[2], 1}, torch::kUInt8);
  if (data.images.numel() > 0) {
    std::memcpy(data.images.data_ptr<uint8_t>(), image_bytes.data() + 16,
                static_cast<size_t>(data.images.numel()));
  }
  data.labels = torch::empty({count[0]}, torch::kInt64);
  int64_t* labels = data.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count[0]; ++i) labels[i] = label_bytes[8 + i];
  return data;
}

DatasetPair read_mnist_folder(const fs::path& dir, const std::string& name) {
  if (!fs::is_directory(dir)) throw UserError("'" + dir.string() + "' is not a directory");
  DatasetPair pair;
  pair.name = name;
  if (name == "fashion-mnist") {
    pair.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  } else {
    pair.class_names = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  }
  // Digits change meaning when mirrored; clothes do not.
  pair.natural_hflip = name == "fashion-mnist";

  const fs::path train_labels = find_mnist_file(dir, "train-labels", "idx1-ubyte");
  pair.train = read_idx(find_mnist_file(dir, "train-images", "idx3-ubyte"), train_labels);
  check_labels_below(pair.train.labels, pair.num_classes(), train_labels);

  const fs::path test_labels = find_mnist_file(dir, "t10k-labels", "idx1-ubyte");
  pair.test = read_idx(find_mnist_file(dir, "t10k-images", "idx3-ubyte"), test_labels);
  check_labels_below(pair.test.labels, pair.num_classes(), test_labels);
  return pair;
}

}  // namespace nad::data
