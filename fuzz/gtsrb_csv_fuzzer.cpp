// libFuzzer target for the GTSRB annotation reader (GT-000NN.csv, GT-final_test.csv).
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
  const auto file = nad::fuzz::write_input("GT-00000.csv", data, size);
  try {
    for (const nad::data::GtsrbAnnotation& row : nad::data::read_gtsrb_annotations(file)) {
      if (row.filename.empty() || row.class_id < 0 || row.class_id >= nad::data::kMaxClasses) {
        __builtin_trap();
      }
      if (row.filename.find('/') != std::string::npos) __builtin_trap();
    }
  } catch (const nad::UserError&) {
  }
  return 0;
}
