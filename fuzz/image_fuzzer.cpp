// libFuzzer target for read_image and read_image_info: PNG, JPEG and BMP through stb_image
// (compiled into the target, so that the sanitizers see inside it), PPM through nad's parser.
// Odd-length inputs are decoded as grey, even-length ones as RGB.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "nad/data/readers.h"
#include "nad/util/error.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nad::fuzz::warm_up();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = nad::fuzz::write_input("image", data, size);
  const int channels = size % 2 ? 1 : 3;
  try {
    const nad::data::ImageInfo info = nad::data::read_image_info(file);
    const torch::Tensor image = nad::data::read_image(file, channels);
    if (image.size(0) != info.height || image.size(1) != info.width) __builtin_trap();
    if (image.size(2) != channels) __builtin_trap();
    (void)image.sum().item<int64_t>();  // touch every pixel
  } catch (const nad::UserError&) {
  }
  return 0;
}
