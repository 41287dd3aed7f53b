#include <stb_image.h>
#include <stb_image_resize.h>

#include <cctype>
#include <cstring>
#include <limits>
#include <string>
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
  // Our own PPM parser, not stb's, so PPM files get the strict checks of read_ppm.
  if (bytes.size() >= 2 && bytes[0] == 'P' && std::isdigit(bytes[1])) {
    torch::Tensor rgb = decode_ppm(bytes, file);
    return channels == 3 ? rgb : to_luminance(rgb);
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw UserError("'" + file.string() + "' is too large to be an image");
  }
  int width = 0, height = 0, native = 0;
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()),
                                                &width, &height, &native, channels);
  if (pixels == nullptr) {
    const char* reason = stbi_failure_reason();
    throw UserError("cannot decode image '" + file.string() +
                    "': " + (reason != nullptr ? reason : "unknown error"));
  }
  torch::Tensor image = torch::empty({height, width, channels}, torch::kUInt8);
  std::memcpy(image.data_ptr<uint8_t>(), pixels, static_cast<size_t>(image.numel()));
  stbi_image_free(pixels);
  return image;
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
