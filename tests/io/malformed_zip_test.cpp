// Zip archives whose offsets or sizes lie, field by field: each is a UserError naming the
// archive and what is wrong, found before any entry is read.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "nad/io/torch_file.h"
#include "nad/io/zip_archive.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "support/temp_dir.h"
#include "support/user_error.h"

namespace nad::io::zip {
namespace {

using Bytes = std::vector<unsigned char>;

using nad::test::expect_user_error;

void set32(Bytes& bytes, size_t at, uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<unsigned char>(value >> (8 * i));
}

// Two stored entries; `directory` is the offset of the first central directory header.
struct Archive {
  Bytes bytes;
  size_t directory = 0;
  size_t end = 0;  // of the end-of-directory record
  Archive() {
    Writer writer;
    writer.add("archive/a", "hello", 5);
    writer.add("archive/b", "world!", 6);
    bytes = writer.finish();
    end = bytes.size() - 22;
    directory = bytes[end + 16] | (bytes[end + 17] << 8) | (bytes[end + 18] << 16);
    EXPECT_EQ(bytes[directory], 0x50);
    EXPECT_EQ(bytes[directory + 3], 0x02);
  }
  void read() const { Reader(bytes.data(), bytes.size(), "bad.zip"); }
};

TEST(MalformedZip, EndRecordFieldsAreChecked) {
  Archive dir_offset;
  set32(dir_offset.bytes, dir_offset.end + 16, 0x7fffff00);
  expect_user_error([&] { dir_offset.read(); }, {"'bad.zip' is not a readable zip archive",
                                                 "central directory outside the file"});
  Archive dir_size;
  set32(dir_size.bytes, dir_size.end + 12, 0x10000);
  expect_user_error([&] { dir_size.read(); }, {"bad.zip", "central directory outside the file"});
  Archive count;
  count.bytes[count.end + 10] = 200;
  expect_user_error([&] { count.read(); }, {"bad.zip", "entry count exceeds the directory"});
  Archive disks;
  disks.bytes[disks.end + 4] = 1;
  expect_user_error([&] { disks.read(); }, {"bad.zip", "multi-disk"});
  Archive no_end;
  no_end.bytes[no_end.end] = 0;
  expect_user_error([&] { no_end.read(); }, {"bad.zip", "no end-of-directory record"});
}

TEST(MalformedZip, CentralHeaderFieldsAreChecked) {
  Archive local;
  set32(local.bytes, local.directory + 42, 0xfffffff0);  // local header offset
  expect_user_error([&] { local.read(); }, {"bad.zip", "entry 'archive/a' has no local header"});
  Archive sizes;
  set32(sizes.bytes, sizes.directory + 20, 1 << 20);  // compressed size
  set32(sizes.bytes, sizes.directory + 24, 1 << 20);  // uncompressed size
  expect_user_error([&] { sizes.read(); },
                    {"bad.zip", "entry 'archive/a' runs past the end of the file"});
  Archive mismatch;
  set32(mismatch.bytes, mismatch.directory + 24, 4);
  expect_user_error([&] { mismatch.read(); },
                    {"bad.zip", "entry 'archive/a' has inconsistent sizes"});
  Archive encrypted;
  encrypted.bytes[encrypted.directory + 8] = 1;
  expect_user_error([&] { encrypted.read(); }, {"bad.zip", "entry 'archive/a' is encrypted"});
  Archive name;
  name.bytes[name.directory + 28] = 0xff;  // name length past the directory
  expect_user_error([&] { name.read(); }, {"bad.zip", "central directory truncated"});
  Archive signature;
  signature.bytes[signature.directory + 46 + 9] = 0;  // second header's signature
  expect_user_error([&] { signature.read(); }, {"bad.zip", "bad central directory entry"});
}

TEST(MalformedZip, Zip64RecordsAreChecked) {
  const Bytes good =
      read_file_bytes(std::filesystem::path(NAD_FIXTURES_DIR) / "checkpoints" / "dtypes_zip.pt");
  ASSERT_GT(good.size(), 42u);
  const size_t locator = good.size() - 22 - 20;
  ASSERT_EQ(good[locator], 0x50);
  ASSERT_EQ(good[locator + 2], 0x06);
  ASSERT_EQ(good[locator + 3], 0x07);
  Bytes bad = good;
  set32(bad, locator + 8, 0x7ffffff0);  // the zip64 end record's offset
  expect_user_error(
      [&] { Reader(bad.data(), bad.size(), "big.pt"); },
      {"'big.pt' is not a readable zip archive", "bad zip64 end-of-directory record"});
}

TEST(MalformedZip, CorruptEntryNamesTheFileAndEntry) {
  nad::test::TempDir tmp;
  const Bytes good = io::encode_torch_state_dict({{"w", torch::ones({4})}}, io::TorchFormat::kZip);
  Reader archive(good.data(), good.size(), "x");
  Bytes bad = good;
  bad[archive.find("archive/data/0")->offset + 1] ^= 0x10;
  nad::test::write_bytes(tmp / "model.pt", bad);
  expect_user_error(
      [&] { io::read_torch_state_dict(tmp / "model.pt"); },
      {(tmp / "model.pt").string(), "entry 'archive/data/0' is corrupt (CRC mismatch)"});
}

}  // namespace
}  // namespace nad::io::zip
