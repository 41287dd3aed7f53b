// libFuzzer target for one CIFAR-100 binary file's records (a coarse label byte, a fine label
// byte and 3072 pixel bytes each), parsed from memory. Run with -max_len of at least 6148 so
// that inputs of two records can grow.
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
  try {
    const nad::data::Cifar100Batch batch =
        nad::data::parse_cifar100_records(data, size, "train.bin");
    const int64_t count = batch.images.size(0);
    if (count * 3074 != static_cast<int64_t>(size)) __builtin_trap();
    if (batch.fine_labels.size(0) != count || batch.coarse_labels.size(0) != count) {
      __builtin_trap();
    }
    if (batch.fine_labels.max().item<int64_t>() > 99) __builtin_trap();
    if (batch.coarse_labels.max().item<int64_t>() > 19) __builtin_trap();
    // The first pixel of the first record is the byte after its two labels (red plane).
    if (batch.images[0][0][0][0].item<int64_t>() != data[2]) __builtin_trap();
  } catch (const nad::UserError&) {
  }
  return 0;
}
