#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "nad/util/files.h"

namespace nad::test {

// A fresh directory under ::testing::TempDir(), unique per process and test, removed when the
// object goes away, so tests can run in parallel (ctest -j) without sharing fixtures.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::string label = "nad";
    if (const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
      label = std::string(info->test_suite_name()) + "_" + info->name();
    }
    for (char& c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
    }
    path_ = std::filesystem::path(::testing::TempDir()) /
            (label + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    remove_tree(path_);
    std::filesystem::create_directories(path_);
  }
  // NAD_KEEP_TEST_DIRS=1 keeps the folder, to inspect what a failing test wrote.
  ~TempDir() {
    if (const char* keep = std::getenv("NAD_KEEP_TEST_DIRS"); keep && std::string(keep) == "1") {
      return;
    }
    remove_tree(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& relative) const { return path_ / relative; }

 private:
  std::filesystem::path path_;
};

// Writes `size` bytes to `file`, creating its parent folders.
inline void write_bytes(const std::filesystem::path& file, const void* data, size_t size) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw std::runtime_error("cannot write test fixture " + file.string());
}

template <typename Bytes>
void write_bytes(const std::filesystem::path& file, const Bytes& bytes) {
  write_bytes(file, bytes.data(), bytes.size());
}

}  // namespace nad::test
