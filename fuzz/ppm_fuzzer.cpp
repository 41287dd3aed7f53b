// libFuzzer target for the PPM reader (P6, 8-bit) and the 32 x 32 resize GTSRB applies to
// every image it reads.
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
  const auto file = nad::fuzz::write_input("image.ppm", data, size);
  try {
    const torch::Tensor image = nad::data::read_ppm(file);
    if (image.dim() != 3 || image.size(2) != 3) __builtin_trap();
    const torch::Tensor small = nad::data::resize_image(image, 32, 32);
    if (small.size(0) != 32 || small.size(1) != 32) __builtin_trap();
  } catch (const nad::UserError&) {
  }
  return 0;
}
