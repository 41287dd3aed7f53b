#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace nad {

// SHA-256 (FIPS 180-4), for fingerprints of weights and files that a later run checks; a
// cryptographic hash so that a different model cannot match by accident.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(const std::string& text) { update(text.data(), text.size()); }
  // The digest as 64 lowercase hex digits; the object is spent afterwards.
  std::string hex_digest();

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes hashed so far
};

std::string sha256_hex(const void* data, size_t size);

}  // namespace nad
