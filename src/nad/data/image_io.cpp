#include <stb_image.h>
#include <stb_image_resize.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

// Reads one header token of a PPM, skipping whitespace and `#` comments; `pos` ends just
// after the token.
std::string next_ppm_token(const std::vector<unsigned char>& bytes, size_t& pos,
                           const fs::path& file) {
  while (pos < bytes.size()) {
    if (std::isspace(bytes[pos])) {
      ++pos;
    } else if (bytes[pos] == '#') {
      while (pos < bytes.size() && bytes[pos] != '\n' && bytes[pos] != '\r') ++pos;
    } else {
      break;
    }
  }
  std::string token;
  while (pos < bytes.size() && !std::isspace(bytes[pos]) && bytes[pos] != '#') {
    token.push_back(static_cast<char>(bytes[pos++]));
  }
  if (token.empty()) throw UserError("'" + file.string() + "': PPM header is truncated");
  return token;
}

int64_t parse_ppm_number(const std::string& token, const char* what, const fs::path& file) {
  const bool digits = !token.empty() && token.size() <= 9 &&
                      token.find_first_not_of("0123456789") == std::string::npos;
  const int64_t value = digits ? std::stoll(token) : 0;
  if (value <= 0) {
    throw UserError("'" + file.string() + "': bad PPM " + what + " '" + token + "'");
  }
  return value;
}

// Rejects dimensions past kMaxImageSide / kMaxImagePixels, naming the file and the field.
void check_image_size(int64_t width, int64_t height, const char* format, const fs::path& file) {
  const std::pair<const char*, int64_t> fields[] = {{"width", width}, {"height", height}};
  for (const auto& [field, value] : fields) {
    if (value < 1 || value > kMaxImageSide) {
      throw UserError("'" + file.string() + "': " + format + " " + field + " " +
                      std::to_string(value) + " is outside 1 to " + std::to_string(kMaxImageSide));
    }
  }
  if (width * height > kMaxImagePixels) {
    throw UserError("'" + file.string() + "': " + format + " width x height " +
                    std::to_string(width) + "x" + std::to_string(height) +
                    " is over the limit of " + std::to_string(kMaxImagePixels) + " pixels");
  }
}

enum class Format { kPpm, kPng, kJpeg, kBmp };

// The format from the first bytes; PNG, JPEG and BMP go to stb, and only those: stb's other
// loaders (GIF, PSD, TGA, HDR, PIC) never see nad's inputs.
Format sniff(const std::vector<unsigned char>& bytes, const fs::path& file) {
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 2 && bytes[0] == 'P' && std::isdigit(bytes[1])) return Format::kPpm;
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) return Format::kPng;
  if (bytes.size() >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) {
    return Format::kJpeg;
  }
  if (bytes.size() >= 2 && bytes[0] == 'B' && bytes[1] == 'M') return Format::kBmp;
  throw UserError("cannot decode image '" + file.string() +
                  "': not a PNG, JPEG, BMP or binary PPM file (unknown magic bytes)");
}

const char* format_name(Format format) {
  switch (format) {
    case Format::kPpm:
      return "PPM";
    case Format::kPng:
      return "PNG";
    case Format::kJpeg:
      return "JPEG";
    case Format::kBmp:
      return "BMP";
  }
  return "image";
}

// Whether the Huffman table segment (DHT) whose length field is at `pos` declares at most 256
// codes per table, read the way stb_image reads it (zeros past the end of the file).
bool dht_fits(const std::vector<unsigned char>& bytes, size_t pos) {
  const auto at = [&](size_t i) -> int { return i < bytes.size() ? bytes[i] : 0; };
  int64_t left = ((at(pos) << 8) | at(pos + 1)) - 2;
  pos += 2;
  while (left > 0) {
    const int q = at(pos);
    if ((q >> 4) > 1 || (q & 15) > 3) return true;  // stb refuses the table itself
    int64_t codes = 0;
    for (size_t i = 1; i <= 16; ++i) codes += at(pos + i);
    if (codes > 256) return false;
    pos += 17 + static_cast<size_t>(codes);
    left -= 17 + codes;
  }
  return true;
}

// stb_image 2.27 (Debian 12's libstb) trusts the code counts of a JPEG Huffman table and
// writes past its 256-entry arrays when they add up to more (fixed upstream in 2.28). So every
// DHT segment stb could read is checked first: the segments before the first scan are walked
// as stb walks them; from the first scan on, where stb finds markers inside or after the
// entropy-coded data, every 0xFF 0xC4 pair counts as a DHT.
bool jpeg_huffman_tables_fit(const std::vector<unsigned char>& bytes) {
  size_t pos = 2;  // after SOI
  while (pos < bytes.size()) {
    if (bytes[pos] != 0xff) {
      ++pos;  // stb skips bytes between segments one at a time
      continue;
    }
    while (pos < bytes.size() && bytes[pos] == 0xff) ++pos;
    if (pos >= bytes.size()) break;
    const int marker = bytes[pos++];
    // Start of scan, or a marker stb refuses here: the rest is checked byte pair by pair.
    if (marker == 0xda || marker == 0xd9 || marker == 0x00 || (marker >= 0xd0 && marker <= 0xd8)) {
      break;
    }
    if (marker == 0xc4 && !dht_fits(bytes, pos)) return false;
    const size_t length =
        pos + 1 < bytes.size() ? (static_cast<size_t>(bytes[pos]) << 8) | bytes[pos + 1] : 0;
    if (length < 2) break;
    pos += length;
  }
  for (size_t i = std::max<size_t>(pos, 1); i < bytes.size(); ++i) {
    if (bytes[i - 1] == 0xff && bytes[i] == 0xc4 && !dht_fits(bytes, i + 1)) return false;
  }
  return true;
}

// Width, height and stb's channel count from the header, checked against the limits before
// anything of that size is decoded.
void stb_info(const std::vector<unsigned char>& bytes, Format format, const fs::path& file,
              int& width, int& height, int& channels) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw UserError("'" + file.string() + "' is too large to be an image");
  }
  if (format == Format::kJpeg && !jpeg_huffman_tables_fit(bytes)) {
    throw UserError("cannot decode image '" + file.string() +
                    "': bad JPEG header (a Huffman table declares more than 256 codes)");
  }
  if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height,
                             &channels)) {
    const char* reason = stbi_failure_reason();
    throw UserError("cannot decode image '" + file.string() + "': bad " + format_name(format) +
                    " header (" + (reason != nullptr ? reason : "unknown error") + ")");
  }
  check_image_size(width, height, format_name(format), file);
}

torch::Tensor decode_ppm(const std::vector<unsigned char>& bytes, const fs::path& file) {
  if (bytes.size() < 2 || bytes[0] != 'P' || bytes[1] != '6') {
    throw UserError("'" + file.string() +
                    "' is not a binary PPM (expected magic 'P6'; ASCII 'P3' is not supported)");
  }
  size_t pos = 2;
  // The magic must be followed by whitespace or a comment, not glued to the width.
  if (pos < bytes.size() && !std::isspace(bytes[pos]) && bytes[pos] != '#') {
    throw UserError("'" + file.string() + "' is not a binary PPM (bad magic)");
  }
  const int64_t width = parse_ppm_number(next_ppm_token(bytes, pos, file), "width", file);
  const int64_t height = parse_ppm_number(next_ppm_token(bytes, pos, file), "height", file);
  check_image_size(width, height, "PPM", file);
  const int64_t maxval = parse_ppm_number(next_ppm_token(bytes, pos, file), "maxval", file);
  if (maxval != 255) {
    throw UserError("'" + file.string() + "': PPM maxval " + std::to_string(maxval) +
                    " is not supported (only 8-bit, maxval 255)");
  }
  // Exactly one whitespace byte separates maxval from the raster.
  if (pos >= bytes.size() || !std::isspace(bytes[pos])) {
    throw UserError("'" + file.string() + "': PPM header is truncated");
  }
  ++pos;
  const int64_t expected = width * height * 3;
  const int64_t actual = static_cast<int64_t>(bytes.size() - pos);
  if (actual < expected) {
    throw UserError("'" + file.string() + "' is truncated: " + std::to_string(width) + "x" +
                    std::to_string(height) + " PPM needs " + std::to_string(expected) +
                    " pixel bytes, found " + std::to_string(actual));
  }
  if (actual > expected) {
    throw UserError("'" + file.string() + "' has " + std::to_string(actual - expected) +
                    " unexpected bytes after the PPM pixels");
  }
  torch::Tensor image = torch::empty({height, width, 3}, torch::kUInt8);
  std::memcpy(image.data_ptr<uint8_t>(), bytes.data() + pos, static_cast<size_t>(expected));
  return image;
}

// Same weights as stb_image uses for its own colour-to-grey conversion.
torch::Tensor to_luminance(const torch::Tensor& rgb) {
  const int64_t pixels = rgb.size(0) * rgb.size(1);
  torch::Tensor grey = torch::empty({rgb.size(0), rgb.size(1), 1}, torch::kUInt8);
  const uint8_t* src = rgb.data_ptr<uint8_t>();
  uint8_t* dst = grey.data_ptr<uint8_t>();
  for (int64_t i = 0; i < pixels; ++i) {
    dst[i] =
        static_cast<uint8_t>((src[3 * i] * 77 + src[3 * i + 1] * 150 + src[3 * i + 2] * 29) >> 8);
  }
  return grey;
}

}  // namespace

torch::Tensor read_ppm(const fs::path& file) { return decode_ppm(read_file_bytes(file), file); }

torch::Tensor read_image(const fs::path& file, int channels) {
  if (channels != 1 && channels != 3) {
    throw std::invalid_argument("read_image: channels must be 1 or 3");
  }
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  const Format format = sniff(bytes, file);
  // Our own PPM parser, not stb's, so PPM files get the strict checks of read_ppm.
  if (format == Format::kPpm) {
    torch::Tensor rgb = decode_ppm(bytes, file);
    return channels == 3 ? rgb : to_luminance(rgb);
  }
  int width = 0, height = 0, native = 0;
  stb_info(bytes, format, file, width, height, native);
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()),
                                                &width, &height, &native, channels);
  if (pixels == nullptr) {
    const char* reason = stbi_failure_reason();
    throw UserError("cannot decode image '" + file.string() + "': " + format_name(format) +
                    " data is corrupt (" + (reason != nullptr ? reason : "unknown error") + ")");
  }
  std::unique_ptr<unsigned char, void (*)(void*)> owned(pixels, stbi_image_free);
  check_image_size(width, height, format_name(format), file);
  torch::Tensor image = torch::empty({height, width, channels}, torch::kUInt8);
  std::memcpy(image.data_ptr<uint8_t>(), pixels, static_cast<size_t>(image.numel()));
  return image;
}

ImageInfo read_image_info(const fs::path& file) {
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  const Format format = sniff(bytes, file);
  ImageInfo info;
  if (format == Format::kPpm) {
    const torch::Tensor image = decode_ppm(bytes, file);
    info.height = image.size(0);
    info.width = image.size(1);
    return info;
  }
  int width = 0, height = 0, native = 0;
  stb_info(bytes, format, file, width, height, native);
  info.height = height;
  info.width = width;
  info.channels = native <= 2 ? 1 : 3;
  return info;
}

torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width) {
  TORCH_CHECK(image.dim() == 3 && image.scalar_type() == torch::kUInt8,
              "resize_image expects an H x W x C uint8 tensor");
  TORCH_CHECK(height > 0 && width > 0, "resize_image: target size must be positive");
  if (image.size(0) == height && image.size(1) == width) return image;
  const torch::Tensor src = image.contiguous();
  const int channels = static_cast<int>(src.size(2));
  torch::Tensor out = torch::empty({height, width, channels}, torch::kUInt8);
  // stb's default filters (Mitchell when shrinking, Catmull-Rom when enlarging). Its
  // triangle filter would be true bilinear but trips an internal assertion in this stb
  // release for ratios such as 36 -> 28.
  const int ok = stbir_resize_uint8(src.data_ptr<uint8_t>(), static_cast<int>(src.size(1)),
                                    static_cast<int>(src.size(0)), 0, out.data_ptr<uint8_t>(),
                                    static_cast<int>(width), static_cast<int>(height), 0, channels);
  TORCH_CHECK(ok == 1, "stbir_resize_uint8 failed");
  return out;
}

}  // namespace nad::data
