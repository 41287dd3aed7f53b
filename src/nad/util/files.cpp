#include "nad/util/files.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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

namespace {
bool writes_enabled = true;
}  // namespace

void set_file_writes_enabled(bool enabled) { writes_enabled = enabled; }

void write_file_atomic(const fs::path& path, const void* data, size_t size) {
  if (!writes_enabled) return;
  if (path.has_parent_path()) ensure_directory(path.parent_path());
  std::random_device rd;
  const fs::path tmp = path.string() + ".tmp" + std::to_string(rd() % 1000000);
  // Any failure removes the temporary file and leaves `path` as it was.
  auto fail = [&](int fd, const std::string& what) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw UserError("cannot write '" + path.string() + "': " + what + ": " + std::strerror(error) +
                    (error == ENOSPC || error == EFBIG || error == EDQUOT
                         ? " (the previous file, if any, is kept)"
                         : ""));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(fd, "cannot create " + tmp.filename().string());
  const char* bytes = static_cast<const char*>(data);
  size_t written = 0;
  while (written < size) {
    const ssize_t n = ::write(fd, bytes + written, size - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(fd, "writing failed after " + std::to_string(written) + " bytes");
    written += static_cast<size_t>(n);
  }
  // On disk before the rename, so that a crash leaves the old file or the new one, whole.
  if (::fsync(fd) != 0) fail(fd, "fsync failed");
  if (::close(fd) != 0) fail(-1, "close failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail(-1, "rename failed");
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

bool remove_tree(const std::filesystem::path& path) {
  struct stat info;
  if (::lstat(path.c_str(), &info) != 0) return errno == ENOENT;
  auto remove_one = [](const char* entry, const struct stat*, int, struct FTW*) -> int {
    return std::remove(entry) == 0 || errno == ENOENT ? 0 : -1;
  };
  // Depth first (children before their folder), physical (links removed, not followed).
  return ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

}  // namespace nad
