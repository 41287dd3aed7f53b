// Shared by the reader fuzz targets: each input is written to a file in a private temporary
// folder (the readers take paths), then handed to the reader. Anything but a result or a
// nad::UserError is a finding.
#pragma once
#include <torch/torch.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace nad::fuzz {

// A folder made once per process (under /dev/shm when there is one, to spare the disk) and
// removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = std::string(base) + "/nad-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_dir(), ignored);
    });
    return std::filesystem::path(pattern);
  }();
  return dir;
}

// Writes the bytes to scratch_dir()/name and returns the path.
inline std::filesystem::path write_input(const std::string& name, const uint8_t* data,
                                         size_t size) {
  const std::filesystem::path file = scratch_dir() / name;
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) std::abort();
  return file;
}

// LibTorch's lazily built globals (allocators, dtype tables) are made once, so that the leak
// checker does not count them against the first input; the scratch folder too.
inline void warm_up() {
  torch::Tensor warm = torch::ones({4}).as_strided({2}, {2}, 1);
  (void)warm.sum().item<double>();
  (void)torch::empty({2, 2, 2, 1}, torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
  (void)torch::empty({3}, torch::kInt64).max();
  (void)scratch_dir();
}

}  // namespace nad::fuzz
