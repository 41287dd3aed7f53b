// libFuzzer target for Tiny-ImageNet's val/val_annotations.txt parser (file name, wnid and four
// box integers per line, tab separated), parsed from memory.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "fuzz_support.h"
#include "nad/data/readers.h"
#include "nad/util/error.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nad::fuzz::warm_up();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    std::set<std::string> seen;
    size_t previous_line = 0;
    for (const nad::data::TinyImagenetAnnotation& row :
         nad::data::parse_tiny_imagenet_val_annotations(text, "val_annotations.txt")) {
      // Every name must stay inside val/images/ and be listed once.
      if (row.filename.empty() || row.filename == "." || row.filename == "..") __builtin_trap();
      if (row.filename.find_first_of(std::string("/\\\0", 3)) != std::string::npos) {
        __builtin_trap();
      }
      if (row.wnid.empty() || row.wnid.find('\t') != std::string::npos) __builtin_trap();
      if (!seen.insert(row.filename).second) __builtin_trap();
      if (row.line <= previous_line) __builtin_trap();
      previous_line = row.line;
    }
  } catch (const nad::UserError&) {
  }
  return 0;
}
