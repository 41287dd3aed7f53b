#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

// The zip container of torch.save (PyTorch >= 1.6): every entry is stored uncompressed, so a
// reader only has to locate entries and a writer only has to lay them out.
//
// Hand-written instead of minizip: torch.save never compresses, so all we need is the
// directory walk, and doing it here keeps every offset and length checked against the real
// buffer (the fuzz target exercises exactly this code, sanitizers included), reads zip64
// records (PyTorch writes them on every file) and adds no dependency.
namespace nad::io::zip {

struct Entry {
  std::string name;
  uint64_t offset = 0;  // of the entry's data in the archive buffer
  uint64_t size = 0;
  uint32_t crc32 = 0;
  uint64_t stored_size = 0;  // bytes in the archive: size, or less when deflated
  bool deflated = false;
};

// Largest entry `inflate` expands (TorchScript code files are a few KiB to a few MiB).
constexpr uint64_t kMaxInflatedEntry = uint64_t{256} << 20;

// A read-only view of an archive held in memory. Every entry is checked when the directory is
// read: stored (not compressed), inside the buffer, local header consistent. Throws UserError
// naming `where` on anything malformed or truncated.
class Reader {
 public:
  // `allow_deflate`: also accept deflated entries (torch.jit.save compresses its code files),
  // read with inflate(); otherwise they are refused as torch.save never writes them.
  Reader(const unsigned char* data, size_t size, std::string where, bool allow_deflate = false);

  const std::vector<Entry>& entries() const { return entries_; }
  // The entry with this exact name, or nullptr.
  const Entry* find(const std::string& name) const;
  // Pointer to a stored entry's bytes (valid while the buffer lives). Checks the CRC-32 once.
  const unsigned char* data(const Entry& entry) const;
  // A stored or deflated entry's bytes, checked against its size (at most kMaxInflatedEntry)
  // and CRC-32.
  std::string read(const Entry& entry) const;

 private:
  const unsigned char* data_;
  size_t size_;
  std::string where_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

// True when the buffer starts like a zip archive (a local file header).
bool looks_like_zip(const unsigned char* data, size_t size);

// Builds an archive of stored entries in memory, each entry's data aligned to 64 bytes as
// PyTorch's writer does (so torch.load(mmap=True) can map it). Archives past 4 GiB (which
// would need zip64 records) are refused.
class Writer {
 public:
  void add(const std::string& name, const void* data, size_t size);
  // Appends the central directory; the archive is then complete.
  std::vector<unsigned char> finish();

 private:
  std::vector<unsigned char> out_;
  std::vector<Entry> entries_;
  std::vector<uint64_t> header_offsets_;
};

}  // namespace nad::io::zip
