#include "nad/util/files.h"

#include <zlib.h>

#include <cstring>
#include <fstream>
#include <random>

#include "nad/util/error.h"

namespace nad {
namespace fs = std::filesystem;

std::vector<unsigned char> read_file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot open '" + path.string() + "': " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw UserError("cannot read '" + path.string() + "'");
  in.seekg(0, std::ios::beg);
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw UserError("cannot read '" + path.string() + "'");
  }
  return bytes;
}

std::vector<unsigned char> read_maybe_gzip(const fs::path& path) {
  std::vector<unsigned char> raw = read_file_bytes(path);
  if (raw.size() < 2 || raw[0] != 0x1f || raw[1] != 0x8b) return raw;

  z_stream stream{};
  // 16 + MAX_WBITS: expect a gzip header.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
    throw std::runtime_error("zlib initialisation failed");
  }
  std::vector<unsigned char> out;
  out.resize(raw.size() * 4 + 1024);
  stream.next_in = raw.data();
  stream.avail_in = static_cast<uInt>(raw.size());
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    if (stream.total_out >= out.size()) out.resize(out.size() * 2);
    stream.next_out = out.data() + stream.total_out;
    stream.avail_out = static_cast<uInt>(out.size() - stream.total_out);
    status = inflate(&stream, Z_NO_FLUSH);
    if (status == Z_BUF_ERROR && stream.avail_in == 0) break;  // truncated input
    if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) break;
  }
  const bool complete = status == Z_STREAM_END;
  out.resize(stream.total_out);
  inflateEnd(&stream);
  if (!complete)
    throw UserError("'" + path.string() + "' is not a valid gzip file (corrupt or truncated)");
  return out;
}

namespace {
bool writes_enabled = true;
}  // namespace

void set_file_writes_enabled(bool enabled) { writes_enabled = enabled; }

void write_file_atomic(const fs::path& path, const void* data, size_t size) {
  if (!writes_enabled) return;
  if (path.has_parent_path()) ensure_directory(path.parent_path());
  std::random_device rd;
  const fs::path tmp = path.string() + ".tmp" + std::to_string(rd() % 1000000);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw UserError("cannot write '" + tmp.string() + "': " + std::strerror(errno));
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp);
      throw UserError("cannot write '" + path.string() + "' (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    throw UserError("cannot move '" + tmp.string() + "' to '" + path.string() +
                    "': " + ec.message());
  }
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

void ensure_directory(const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec || !fs::is_directory(path)) {
    throw UserError("cannot create directory '" + path.string() + "'" +
                    (ec ? ": " + ec.message() : ""));
  }
}

}  // namespace nad
