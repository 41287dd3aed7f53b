// libFuzzer target for one CIFAR-10 binary batch (records of a label byte and 3072 pixel
// bytes). Run with -max_len of at least 6146 so that inputs of two records can grow.
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
  const auto file = nad::fuzz::write_input("data_batch_1.bin", data, size);
  try {
    const nad::data::Dataset batch = nad::data::read_cifar10_batch(file);
    if (batch.images.size(0) * 3073 != static_cast<int64_t>(size)) __builtin_trap();
    if (batch.labels.max().item<int64_t>() > 9) __builtin_trap();
  } catch (const nad::UserError&) {
  }
  return 0;
}
