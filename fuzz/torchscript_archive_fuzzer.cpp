// libFuzzer target for the TorchScript archive check (the zip reader with deflated entries, the
// code scanner, the __setstate__ check). Every input must end in a result or a UserError: any
// other exception, a crash, a sanitizer report, a leak or a hang is a bug. Nothing is compiled:
// the check runs before LibTorch sees an archive. Seeds: fuzz/corpus/torchscript_archive/
// (archives written by scripts/make_torchscript_models.py).
#include <cstddef>
#include <cstdint>

#include "nad/io/torchscript_archive.h"
#include "nad/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A fixed policy, so that the registry's lazily built globals do not count as a leak.
  static const nad::io::OperatorPolicy policy = [](const std::string& ns, const std::string& name) {
    return (ns == "aten" || ns == "prim") && name != "save" && name != "from_file";
  };
  try {
    const nad::io::TorchScriptCheck check =
        nad::io::check_torchscript_archive(data, size, "fuzz", policy);
    (void)check;
  } catch (const nad::UserError&) {
  }
  return 0;
}
