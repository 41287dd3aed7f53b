#include "nad/io/npy.h"

#include <string>

#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::io {

void write_npy(const std::filesystem::path& file, const torch::Tensor& tensor) {
  std::string descr;
  if (tensor.scalar_type() == torch::kUInt8) {
    descr = "|u1";
  } else if (tensor.scalar_type() == torch::kLong) {
    descr = "<i8";  // nad runs on little-endian machines only (x86-64, aarch64)
  } else if (tensor.scalar_type() == torch::kFloat) {
    descr = "<f4";
  } else {
    throw std::invalid_argument("write_npy: only uint8, int64 and float32 tensors");
  }
  // "(N,)" for one dimension, "(A, B, C)" for more, as Python writes tuples.
  std::string shape = "(";
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    shape += (d ? ", " : "") + std::to_string(tensor.size(d));
  }
  shape += tensor.dim() == 1 ? ",)" : ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64 and
  // ended by a newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const torch::Tensor data = tensor.to(torch::kCPU).contiguous();
  std::string bytes = std::string("\x93NUMPY", 6) + '\x01' + '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>((header.size() >> 8) & 0xff);
  bytes += header;
  bytes.append(static_cast<const char*>(data.data_ptr()), data.nbytes());
  write_file_atomic(file, bytes.data(), bytes.size());
}

}  // namespace nad::io
