#include "nad/io/zip_archive.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "nad/util/error.h"

namespace nad::io::zip {

namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfDirectory = 0x06054b50;
constexpr uint32_t kZip64EndOfDirectory = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kEndSize = 22;
constexpr size_t kZip64EndSize = 56;
constexpr size_t kZip64LocatorSize = 20;

uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const unsigned char* p) {
  return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}

uint32_t crc_of(const unsigned char* data, uint64_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(size, 1u << 30));
    crc = crc32(crc, data, chunk);
    data += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

bool looks_like_zip(const unsigned char* data, size_t size) {
  return size >= 4 && le32(data) == kLocalHeader;
}

Reader::Reader(const unsigned char* data, size_t size, std::string where, bool allow_deflate)
    : data_(data), size_(size), where_(std::move(where)) {
  auto fail = [&](const std::string& why) -> void {
    throw UserError("'" + where_ + "' is not a readable zip archive: " + why);
  };
  // `length` bytes at `offset` lie inside the buffer (overflow-safe).
  auto inside = [&](uint64_t offset, uint64_t length) {
    return offset <= size_ && length <= size_ - offset;
  };
  if (size_ < kEndSize) fail("too short (truncated?)");

  // The end-of-directory record sits at the end, before a comment of at most 65535 bytes.
  size_t end = size_;  // sentinel: not found
  const size_t lowest = size_ > kEndSize + 65535 ? size_ - kEndSize - 65535 : 0;
  for (size_t pos = size_ - kEndSize + 1; pos-- > lowest;) {
    if (le32(data_ + pos) == kEndOfDirectory && pos + kEndSize + le16(data_ + pos + 20) == size_) {
      end = pos;
      break;
    }
  }
  if (end == size_) fail("no end-of-directory record (truncated?)");
  const unsigned char* e = data_ + end;
  if (le16(e + 4) != 0 || le16(e + 6) != 0) fail("multi-disk archives are not supported");
  uint64_t count = le16(e + 10);
  uint64_t directory_size = le32(e + 12);
  uint64_t directory_offset = le32(e + 16);

  // Zip64: a locator just before the end record points at the zip64 end record.
  if (end >= kZip64LocatorSize && le32(data_ + end - kZip64LocatorSize) == kZip64Locator) {
    const uint64_t record = le64(data_ + end - kZip64LocatorSize + 8);
    if (!inside(record, kZip64EndSize) || le32(data_ + record) != kZip64EndOfDirectory) {
      fail("bad zip64 end-of-directory record");
    }
    count = le64(data_ + record + 32);
    directory_size = le64(data_ + record + 40);
    directory_offset = le64(data_ + record + 48);
  }
  if (!inside(directory_offset, directory_size)) fail("central directory outside the file");
  if (count > directory_size / kCentralHeaderSize) fail("entry count exceeds the directory");

  uint64_t pos = directory_offset;
  const uint64_t directory_end = directory_offset + directory_size;
  entries_.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    if (pos > directory_end || directory_end - pos < kCentralHeaderSize) {
      fail("central directory truncated");
    }
    const unsigned char* c = data_ + pos;
    if (le32(c) != kCentralHeader) fail("bad central directory entry");
    const uint16_t flags = le16(c + 8), method = le16(c + 10);
    const uint64_t name_length = le16(c + 28), extra_length = le16(c + 30),
                   comment_length = le16(c + 32);
    const uint64_t variable = name_length + extra_length + comment_length;
    if (directory_end - pos - kCentralHeaderSize < variable) fail("central directory truncated");
    Entry entry;
    entry.name.assign(reinterpret_cast<const char*>(c + kCentralHeaderSize), name_length);
    entry.crc32 = le32(c + 16);
    uint64_t compressed = le32(c + 20);
    entry.size = le32(c + 24);
    uint64_t local = le32(c + 42);
    // Zip64 extended information replaces the fields that hold 0xFFFFFFFF, in this order.
    const unsigned char* extra = c + kCentralHeaderSize + name_length;
    for (uint64_t x = 0; x + 4 <= extra_length;) {
      const uint16_t id = le16(extra + x), length = le16(extra + x + 2);
      if (x + 4 + length > extra_length) fail("bad extra field in '" + entry.name + "'");
      if (id == 0x0001) {
        const unsigned char* field = extra + x + 4;
        uint64_t used = 0;
        auto take = [&](uint64_t& value) {
          if (value != 0xFFFFFFFFu) return;
          if (used + 8 > length) fail("short zip64 field in '" + entry.name + "'");
          value = le64(field + used);
          used += 8;
        };
        take(entry.size);
        take(compressed);
        take(local);
      }
      x += 4 + length;
    }
    if (flags & 0x1) fail("entry '" + entry.name + "' is encrypted");
    entry.deflated = method == 8 && allow_deflate;
    if (method != 0 && !entry.deflated) {
      fail("entry '" + entry.name + "' is compressed (method " + std::to_string(method) +
           "); torch.save stores entries uncompressed");
    }
    if (!entry.deflated && compressed != entry.size) {
      fail("entry '" + entry.name + "' has inconsistent sizes");
    }
    entry.stored_size = compressed;
    if (!inside(local, kLocalHeaderSize) || le32(data_ + local) != kLocalHeader) {
      fail("entry '" + entry.name + "' has no local header (truncated?)");
    }
    const uint64_t local_name = le16(data_ + local + 26), local_extra = le16(data_ + local + 28);
    entry.offset = local + kLocalHeaderSize + local_name + local_extra;
    if (!inside(entry.offset, entry.stored_size)) {
      fail("entry '" + entry.name + "' runs past the end of the file (truncated?)");
    }
    if (!by_name_.emplace(entry.name, entries_.size()).second) {
      fail("duplicate entry '" + entry.name + "'");
    }
    entries_.push_back(std::move(entry));
    pos += kCentralHeaderSize + variable;
  }
}

const Entry* Reader::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

std::string Reader::read(const Entry& entry) const {
  if (!entry.deflated) {
    const unsigned char* bytes = data(entry);
    return std::string(reinterpret_cast<const char*>(bytes), entry.size);
  }
  auto fail = [&](const std::string& why) {
    throw UserError("'" + where_ + "': entry '" + entry.name + "' " + why);
  };
  if (entry.size > kMaxInflatedEntry) {
    fail("inflates to " + std::to_string(entry.size) + " bytes, over the limit of " +
         std::to_string(kMaxInflatedEntry));
  }
  std::string out(static_cast<size_t>(entry.size), '\0');
  z_stream stream{};
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) fail("cannot be inflated (zlib)");
  stream.next_in = const_cast<unsigned char*>(data_ + entry.offset);
  stream.avail_in = static_cast<uInt>(std::min<uint64_t>(entry.stored_size, UINT32_MAX));
  stream.next_out = reinterpret_cast<unsigned char*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  // One call: the output buffer holds exactly the declared size, so a stream that would expand
  // further stops with Z_OK / Z_BUF_ERROR instead of Z_STREAM_END.
  const int result = inflate(&stream, Z_FINISH);
  const uint64_t produced = stream.total_out;
  inflateEnd(&stream);
  if (result != Z_STREAM_END || produced != entry.size) {
    fail("is not a valid deflate stream of " + std::to_string(entry.size) + " bytes");
  }
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  if (crc_of(reinterpret_cast<const unsigned char*>(out.data()), out.size()) != entry.crc32) {
    fail("is corrupt (CRC mismatch)");
  }
#endif
  return out;
}

const unsigned char* Reader::data(const Entry& entry) const {
  if (entry.deflated) {
    throw UserError("'" + where_ + "': entry '" + entry.name + "' is compressed");
  }
  const unsigned char* bytes = data_ + entry.offset;
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  // (Skipped when fuzzing so that mutated inputs reach the parsers behind the archive.)
  if (crc_of(bytes, entry.size) != entry.crc32) {
    throw UserError("'" + where_ + "': entry '" + entry.name + "' is corrupt (CRC mismatch)");
  }
#endif
  return bytes;
}

namespace {
void put16(std::vector<unsigned char>& out, uint32_t v) {
  out.push_back(static_cast<unsigned char>(v));
  out.push_back(static_cast<unsigned char>(v >> 8));
}
void put32(std::vector<unsigned char>& out, uint32_t v) {
  put16(out, v & 0xFFFF);
  put16(out, v >> 16);
}
uint32_t checked32(uint64_t v) {
  if (v >= 0xFFFFFFFFu) throw UserError("archive too large to write (over 4 GiB)");
  return static_cast<uint32_t>(v);
}
}  // namespace

void Writer::add(const std::string& name, const void* data, size_t size) {
  const uint64_t offset = out_.size();
  // PyTorch pads the local extra field ("FB" id) so that the data starts at a multiple of 64.
  const uint64_t unpadded = offset + kLocalHeaderSize + name.size() + 4;
  const uint64_t padding = (64 - unpadded % 64) % 64;
  Entry entry;
  entry.name = name;
  entry.size = size;
  entry.crc32 = crc_of(static_cast<const unsigned char*>(data), size);
  put32(out_, kLocalHeader);
  put16(out_, 20);  // version needed
  put16(out_, 0);   // flags
  put16(out_, 0);   // stored
  put16(out_, 0);   // time
  put16(out_, 0);   // date
  put32(out_, entry.crc32);
  put32(out_, checked32(size));
  put32(out_, checked32(size));
  put16(out_, static_cast<uint32_t>(name.size()));
  put16(out_, static_cast<uint32_t>(4 + padding));
  out_.insert(out_.end(), name.begin(), name.end());
  put16(out_, 0x4246);  // "FB"
  put16(out_, static_cast<uint32_t>(padding));
  out_.insert(out_.end(), padding, 'Z');
  entry.offset = out_.size();
  const auto* bytes = static_cast<const unsigned char*>(data);
  out_.insert(out_.end(), bytes, bytes + size);
  checked32(out_.size());
  header_offsets_.push_back(offset);
  entries_.push_back(std::move(entry));
}

std::vector<unsigned char> Writer::finish() {
  const uint64_t directory_offset = out_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& entry = entries_[i];
    put32(out_, kCentralHeader);
    put16(out_, 20);  // version made by
    put16(out_, 20);  // version needed
    put16(out_, 0);
    put16(out_, 0);
    put16(out_, 0);
    put16(out_, 0);
    put32(out_, entry.crc32);
    put32(out_, checked32(entry.size));
    put32(out_, checked32(entry.size));
    put16(out_, static_cast<uint32_t>(entry.name.size()));
    put16(out_, 0);  // extra
    put16(out_, 0);  // comment
    put16(out_, 0);  // disk
    put16(out_, 0);  // internal attributes
    put32(out_, 0);  // external attributes
    put32(out_, checked32(header_offsets_[i]));
    out_.insert(out_.end(), entry.name.begin(), entry.name.end());
  }
  const uint64_t directory_size = out_.size() - directory_offset;
  if (entries_.size() > 0xFFFF) throw UserError("too many archive entries to write");
  put32(out_, kEndOfDirectory);
  put16(out_, 0);
  put16(out_, 0);
  put16(out_, static_cast<uint32_t>(entries_.size()));
  put16(out_, static_cast<uint32_t>(entries_.size()));
  put32(out_, checked32(directory_size));
  put32(out_, checked32(directory_offset));
  put16(out_, 0);
  return std::move(out_);
}

}  // namespace nad::io::zip
