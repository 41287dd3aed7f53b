#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace nad {

// Reads a whole file; throws UserError naming the path when it cannot.
std::vector<unsigned char> read_file_bytes(const std::filesystem::path& path);

// Writes to a temporary file beside `path` and renames it into place, so a reader never sees
// a half-written file.
void write_file_atomic(const std::filesystem::path& path, const void* data, size_t size);
void write_text_atomic(const std::filesystem::path& path, const std::string& text);

// Off in every process of a distributed run but rank 0, which alone writes outputs: the writes
// above then do nothing (the other ranks compute the same files).
void set_file_writes_enabled(bool enabled);

// Creates the directory (and parents); throws UserError when it cannot.
void ensure_directory(const std::filesystem::path& path);

// Removes a file or a directory tree, never following links; a missing path is fine. Returns
// false when something could not be removed. (POSIX nftw, not std::filesystem::remove_all:
// built with GCC 13 against the CUDA LibTorch, remove_all crashed at the end of every run.)
bool remove_tree(const std::filesystem::path& path);

}  // namespace nad
