// libFuzzer target for the torch.save reader (zip and legacy formats, the pickle machine, the
// tensor checks). Every input must end in a result or a UserError: any other exception, a
// crash, a sanitizer report, a leak or a hang is a bug. Build and run: fuzz/run_all.sh, see
// README.md ("Fuzzing the readers"). Seeds: fuzz/corpus/torch_file/.
#include <cstddef>
#include <cstdint>

#include "nad/io/torch_file.h"
#include "nad/util/error.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // LibTorch's lazily built globals (allocators, dtype tables) are made once here, so that
  // the leak checker does not count them against the first input.
  torch::Tensor warm = torch::ones({4}).as_strided({2}, {2}, 1);
  (void)warm;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nad::io::TorchStateDict state = nad::io::parse_torch_state_dict(data, size, "fuzz");
    // Touch every tensor's elements, as loading into a model would.
    for (const auto& item : state.tensors) {
      if (item.second.numel() > 0 && item.second.numel() < (1 << 20)) {
        (void)item.second.sum().item<double>();
      }
    }
  } catch (const nad::UserError&) {
  }
  return 0;
}
