// libFuzzer target for the IDX reader (images and labels, plain or gzipped). The first two
// bytes give the length of the images file (modulo what is left); the rest is the labels file.
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
  if (size < 2) return 0;
  const size_t rest = size - 2;
  const size_t split =
      (static_cast<size_t>(data[0]) | (static_cast<size_t>(data[1]) << 8)) % (rest + 1);
  const auto images = nad::fuzz::write_input("images-idx3-ubyte", data + 2, split);
  const auto labels = nad::fuzz::write_input("labels-idx1-ubyte", data + 2 + split, rest - split);
  try {
    const nad::data::Dataset dataset = nad::data::read_idx(images, labels);
    if (dataset.images.size(0) != dataset.labels.size(0)) __builtin_trap();
  } catch (const nad::UserError&) {
  }
  return 0;
}
