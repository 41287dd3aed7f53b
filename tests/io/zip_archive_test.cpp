#include "nad/io/zip_archive.h"

#include <gtest/gtest.h>

#include <cstring>

#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::io::zip {
namespace {

std::vector<unsigned char> two_entries() {
  Writer writer;
  writer.add("archive/a", "hello", 5);
  writer.add("archive/data/0", "", 0);
  return writer.finish();
}

TEST(Zip, WriterOutputReadsBack) {
  const std::vector<unsigned char> bytes = two_entries();
  ASSERT_TRUE(looks_like_zip(bytes.data(), bytes.size()));
  Reader reader(bytes.data(), bytes.size(), "a.zip");
  ASSERT_EQ(reader.entries().size(), 2u);
  const Entry* a = reader.find("archive/a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(reader.data(*a)), a->size), "hello");
  EXPECT_EQ(a->offset % 64, 0u);
  EXPECT_EQ(reader.find("archive/data/0")->size, 0u);
  EXPECT_EQ(reader.find("missing"), nullptr);
}

TEST(Zip, ReadsPyTorchsZip64Records) {
  // Every torch.save zip ends with zip64 end records.
  const auto bytes =
      read_file_bytes(std::filesystem::path(NAD_FIXTURES_DIR) / "checkpoints" / "dtypes_zip.pt");
  Reader reader(bytes.data(), bytes.size(), "dtypes_zip.pt");
  EXPECT_NE(reader.find("dtypes_zip/data.pkl"), nullptr);
}

TEST(Zip, AcceptsATrailingCommentAndRefusesMalformedArchives) {
  std::vector<unsigned char> bytes = two_entries();
  // A 3-byte archive comment.
  bytes[bytes.size() - 2] = 3;
  for (char c : std::string("abc")) bytes.push_back(static_cast<unsigned char>(c));
  EXPECT_NO_THROW(Reader(bytes.data(), bytes.size(), "a.zip"));

  std::vector<unsigned char> compressed = two_entries();
  const size_t directory = compressed.size() - 22 - 2 * 46 - 9 - 14;  // first central header
  ASSERT_EQ(compressed[directory], 0x50);
  compressed[directory + 10] = 8;  // deflate
  try {
    Reader(compressed.data(), compressed.size(), "c.zip");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("compressed"), std::string::npos) << e.what();
  }

  Writer writer;
  writer.add("x", "1", 1);
  writer.add("x", "2", 1);
  const auto duplicate = writer.finish();
  EXPECT_THROW(Reader(duplicate.data(), duplicate.size(), "d.zip"), UserError);
  for (size_t keep : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 30}) {
    EXPECT_THROW(Reader(bytes.data(), keep, "t.zip"), UserError) << keep;
  }
}

}  // namespace
}  // namespace nad::io::zip
