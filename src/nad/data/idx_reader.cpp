#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
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

std::string quoted(const fs::path& file) { return "'" + file.string() + "'"; }

// The bytes of one IDX file in order, inflated on demand when the file is gzipped (one or
// more gzip members), so that nothing larger than what the header announces is ever held.
class IdxStream {
 public:
  explicit IdxStream(const fs::path& file) : file_(file), raw_(read_file_bytes(file)) {
    gzip_ = raw_.size() >= 2 && raw_[0] == 0x1f && raw_[1] == 0x8b;
    if (gzip_) {
      // 16 + MAX_WBITS: expect a gzip header.
      if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
      z_ready_ = true;
    }
  }
  ~IdxStream() {
    if (z_ready_) inflateEnd(&z_);
  }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  bool gzip() const { return gzip_; }
  uint64_t file_size() const { return raw_.size(); }
  // Bytes handed out so far.
  uint64_t consumed() const { return consumed_; }

  // Copies the next bytes into `out`, up to `n`; fewer only at the end of the data.
  uint64_t read(unsigned char* out, uint64_t n) {
    uint64_t done = gzip_ ? inflate_into(out, n) : copy_into(out, n);
    consumed_ += done;
    return done;
  }

  // Whether bytes are left after what read() handed out.
  bool more() {
    unsigned char probe;
    return read(&probe, 1) == 1;
  }

 private:
  uint64_t copy_into(unsigned char* out, uint64_t n) {
    const uint64_t take = std::min<uint64_t>(n, raw_.size() - raw_pos_);
    if (take > 0) std::memcpy(out, raw_.data() + raw_pos_, take);
    raw_pos_ += take;
    return take;
  }

  uint64_t inflate_into(unsigned char* out, uint64_t n) {
    uint64_t done = 0;
    while (done < n && !ended_) {
      if (z_.avail_in == 0 && raw_pos_ < raw_.size()) {
        const uint64_t chunk = std::min<uint64_t>(raw_.size() - raw_pos_, UINT_MAX);
        z_.next_in = raw_.data() + raw_pos_;
        z_.avail_in = static_cast<uInt>(chunk);
        raw_pos_ += chunk;
      }
      const uint64_t room = std::min<uint64_t>(n - done, UINT_MAX);
      z_.next_out = out + done;
      z_.avail_out = static_cast<uInt>(room);
      const uInt avail_in = z_.avail_in;
      const int status = inflate(&z_, Z_NO_FLUSH);
      const bool progress = z_.avail_out != room || z_.avail_in != avail_in;
      done += room - z_.avail_out;
      if (status == Z_STREAM_END) {
        // Another gzip member may follow (as `cat a.gz b.gz` makes); anything else there is
        // an error of the next header.
        if (z_.avail_in == 0 && raw_pos_ == raw_.size()) {
          ended_ = true;
        } else if (inflateReset(&z_) != Z_OK) {
          corrupt("cannot restart the inflater", done);
        }
      } else if (status == Z_BUF_ERROR) {
        // No progress possible: with input left that means no room (impossible here), so the
        // input is exhausted mid-stream.
        if (z_.avail_in == 0 && raw_pos_ == raw_.size()) corrupt("truncated", done);
        if (!progress && z_.avail_in != 0) corrupt("inflate made no progress", done);
      } else if (status == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (status != Z_OK) {
        corrupt(z_.msg != nullptr ? z_.msg : "corrupt data", done);
      }
    }
    return done;
  }

  // `done`: bytes inflated by the read() under way.
  [[noreturn]] void corrupt(const std::string& why, uint64_t done) const {
    throw UserError(quoted(file_) + " is not a valid gzip file (" + why + ", after " +
                    std::to_string(consumed_ + done) + " inflated bytes)");
  }

  fs::path file_;
  std::vector<unsigned char> raw_;
  uint64_t raw_pos_ = 0;
  bool gzip_ = false;
  bool z_ready_ = false;
  bool ended_ = false;
  z_stream z_{};
  uint64_t consumed_ = 0;
};

uint32_t be32(const unsigned char* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

std::string hex32(uint32_t value) {
  char text[11];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

// A parsed IDX header: dims[0] is the item count, the rest the shape of one item.
struct IdxHeader {
  std::vector<int64_t> dims;
  int64_t payload = 0;  // bytes after the header
};

// Reads and checks the header of an unsigned-byte IDX file whose magic must be `magic`.
// `what` is "images" or "labels"; `fields` names the dimensions for messages.
IdxHeader read_idx_header(IdxStream& in, uint32_t magic, const fs::path& file, const char* what,
                          const std::vector<const char*>& fields) {
  const size_t rank = magic & 0xff;
  const size_t header_size = 4 + 4 * rank;
  unsigned char header[16];
  // The magic first, so that a file of the other kind is named as such even when short.
  uint64_t got = in.read(header, 4);
  const uint32_t found = got == 4 ? be32(header) : 0;
  if (got == 4 && found != magic) {
    std::string hint;
    if (found == kImagesMagic || found == kLabelsMagic) {
      hint = found == kImagesMagic ? " (this is an images file)" : " (this is a labels file)";
    } else if ((found >> 16) != 0 || ((found >> 8) & 0xff) != 0x08) {
      hint = (found >> 16) != 0 ? " (not an IDX file)" : " (not of unsigned bytes)";
    }
    throw UserError(quoted(file) + ": bad IDX magic " + hex32(found) + ", expected " +
                    hex32(magic) + " for " + what + hint);
  }
  if (got == 4) got += in.read(header + 4, header_size - 4);
  if (got < header_size) {
    throw UserError(quoted(file) + " is too short to be an IDX " + what +
                    " file: " + std::to_string(got) + (in.gzip() ? " inflated" : "") +
                    " bytes, the header alone needs " + std::to_string(header_size));
  }
  IdxHeader out;
  for (size_t i = 0; i < rank; ++i) {
    const int64_t dim = be32(header + 4 + 4 * i);
    const int64_t low = i == 0 ? 0 : 1;
    const int64_t high = i == 0 ? kMaxIdxItems : kMaxImageSide;
    if (dim < low || dim > high) {
      throw UserError(quoted(file) + ": IDX header field '" + fields[i] + "' is " +
                      std::to_string(dim) + ", outside " + std::to_string(low) + " to " +
                      std::to_string(high));
    }
    out.dims.push_back(dim);
  }
  int64_t item = 1;
  for (size_t i = 1; i < rank; ++i) item *= out.dims[i];
  if (item > kMaxImagePixels) {
    throw UserError(quoted(file) + ": IDX header fields 'rows' x 'columns' give " +
                    std::to_string(item) + " pixels per image, over the limit of " +
                    std::to_string(kMaxImagePixels));
  }
  out.payload = out.dims[0] * item;  // <= 1e8 * 2^26 < 2^63
  if (out.payload > kMaxIdxBytes) {
    throw UserError(quoted(file) + ": IDX header field 'count' " + std::to_string(out.dims[0]) +
                    " gives " + std::to_string(out.payload) + " bytes of " + what +
                    ", over the limit of " + std::to_string(kMaxIdxBytes));
  }
  return out;
}

std::string describe_idx(const IdxHeader& header, const char* what) {
  std::string text = std::to_string(header.dims[0]) + " " + what;
  if (header.dims.size() == 3) {
    text += " of " + std::to_string(header.dims[1]) + "x" + std::to_string(header.dims[2]);
  }
  return text;
}

// Checks, before anything of that size is allocated, that the file can hold the payload its
// header announces: exactly, for a plain file; within deflate's best ratio, for gzip.
void check_idx_size(const IdxStream& in, const IdxHeader& header, const fs::path& file,
                    const char* what, const char* unit) {
  const uint64_t header_size = 4 + 4 * header.dims.size();
  const uint64_t payload = static_cast<uint64_t>(header.payload);
  if (!in.gzip()) {
    const uint64_t actual = in.file_size() - header_size;
    if (actual != payload) {
      throw UserError(quoted(file) + ": header says " + describe_idx(header, what) +
                      " but the file holds " + std::to_string(actual) + " bytes of " + unit +
                      (actual < payload ? " (truncated)" : " (trailing bytes)") + ", not " +
                      std::to_string(payload));
    }
  } else if (payload + header_size > in.file_size() * kMaxDeflateRatio + 1024) {
    throw UserError(quoted(file) + ": header says " + describe_idx(header, what) + " (" +
                    std::to_string(payload) + " bytes of " + unit + ") but " +
                    std::to_string(in.file_size()) +
                    " bytes of gzip cannot inflate to that much (truncated?)");
  }
}

// Reads the payload into `out` (header.payload bytes) and checks nothing follows.
void read_idx_payload(IdxStream& in, const IdxHeader& header, unsigned char* out,
                      const fs::path& file, const char* what, const char* unit) {
  const uint64_t payload = static_cast<uint64_t>(header.payload);
  const uint64_t got = in.read(out, payload);
  if (got < payload) {
    throw UserError(quoted(file) + ": header says " + describe_idx(header, what) + " but the " +
                    (in.gzip() ? "inflated " : "") + "file holds " + std::to_string(got) +
                    " bytes of " + unit + " (truncated), not " + std::to_string(payload));
  }
  if (in.more()) {
    throw UserError(quoted(file) + ": header says " + describe_idx(header, what) + " but the " +
                    (in.gzip() ? "inflated " : "") + "file holds more than " +
                    std::to_string(payload) + " bytes of " + unit + " (trailing bytes)");
  }
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
    const int64_t index = labels.argmax().item<int64_t>();
    throw UserError(quoted(file) + ": item " + std::to_string(index) + " has label " +
                    std::to_string(labels.max().item<int64_t>()) + " but the dataset has " +
                    std::to_string(classes) + " classes (0 to " + std::to_string(classes - 1) +
                    ")");
  }
}

}  // namespace

Dataset read_idx(const fs::path& images_file, const fs::path& labels_file) {
  // Both headers first: every size is known and checked before the pixels are allocated.
  IdxStream images(images_file);
  const IdxHeader image_header =
      read_idx_header(images, kImagesMagic, images_file, "images", {"count", "rows", "columns"});
  check_idx_size(images, image_header, images_file, "images", "pixels");
  IdxStream labels(labels_file);
  const IdxHeader label_header =
      read_idx_header(labels, kLabelsMagic, labels_file, "labels", {"count"});
  check_idx_size(labels, label_header, labels_file, "labels", "labels");
  const int64_t count = image_header.dims[0];
  if (count != label_header.dims[0]) {
    throw UserError(quoted(images_file) + " has " + std::to_string(count) + " images but " +
                    quoted(labels_file) + " has " + std::to_string(label_header.dims[0]) +
                    " labels (header field 'count')");
  }
  Dataset data;
  data.images = torch::empty({count, image_header.dims[1], image_header.dims[2], 1}, torch::kUInt8);
  read_idx_payload(images, image_header, data.images.data_ptr<uint8_t>(), images_file, "images",
                   "pixels");
  std::vector<unsigned char> label_bytes(static_cast<size_t>(count));
  read_idx_payload(labels, label_header, label_bytes.data(), labels_file, "labels", "labels");
  data.labels = torch::empty({count}, torch::kInt64);
  int64_t* out = data.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) out[i] = label_bytes[static_cast<size_t>(i)];
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
