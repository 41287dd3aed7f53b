#include "nad/io/png.h"

#include <stb_image_write.h>

#include "nad/util/files.h"

namespace nad::io {

std::vector<unsigned char> encode_png(const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && image.scalar_type() == torch::kUInt8,
              "encode_png needs an H x W x C uint8 image");
  const torch::Tensor pixels = image.to(torch::kCPU).contiguous();
  const int height = static_cast<int>(pixels.size(0)), width = static_cast<int>(pixels.size(1)),
            channels = static_cast<int>(pixels.size(2));
  std::vector<unsigned char> bytes;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    const auto* begin = static_cast<const unsigned char*>(data);
    out->insert(out->end(), begin, begin + size);
  };
  const int ok = stbi_write_png_to_func(append, &bytes, width, height, channels,
                                        pixels.data_ptr<uint8_t>(), width * channels);
  TORCH_CHECK(ok != 0, "stbi_write_png_to_func failed");
  return bytes;
}

void write_png(const std::filesystem::path& file, const torch::Tensor& image) {
  const std::vector<unsigned char> bytes = encode_png(image);
  write_file_atomic(file, bytes.data(), bytes.size());
}

}  // namespace nad::io
