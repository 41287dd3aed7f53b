// One malformed file per reader and header field: each must end in a UserError whose message
// names the file and the field, before anything of the claimed size is allocated.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <zlib.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nad/data/dataset.h"
#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "support/temp_dir.h"
#include "support/user_error.h"

namespace nad::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using nad::test::TempDir;
using nad::test::write_bytes;

#define EXPECT_REFUSED(statement, ...) \
  nad::test::expect_user_error([&] { statement; }, {__VA_ARGS__})

Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

void put_be32(Bytes& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(value >> shift));
}
void put_le16(Bytes& out, uint32_t value) {
  out.push_back(static_cast<uint8_t>(value));
  out.push_back(static_cast<uint8_t>(value >> 8));
}
void put_le32(Bytes& out, uint32_t value) {
  put_le16(out, value & 0xffff);
  put_le16(out, value >> 16);
}

Bytes gzip_bytes(const Bytes& data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out(deflateBound(&z, data.size()) + 64);
  z.next_in = const_cast<uint8_t*>(data.data());
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// ---- IDX --------------------------------------------------------------------------------

Bytes idx(uint32_t magic, const std::vector<uint32_t>& dims, size_t payload, uint8_t fill = 1) {
  Bytes out;
  put_be32(out, magic);
  for (uint32_t dim : dims) put_be32(out, dim);
  out.insert(out.end(), payload, fill);
  return out;
}

struct IdxFiles {
  TempDir tmp;
  fs::path images = tmp / "train-images-idx3-ubyte";
  fs::path labels = tmp / "train-labels-idx1-ubyte";
  IdxFiles(const Bytes& image_bytes, const Bytes& label_bytes) {
    write_bytes(images, image_bytes);
    write_bytes(labels, label_bytes);
  }
};

const Bytes kThreeLabels = idx(2049, {3}, 3, 2);

TEST(MalformedIdx, BadMagicNamesTheFileAndTheMagic) {
  IdxFiles swapped(kThreeLabels, idx(2051, {3, 2, 4}, 24));
  EXPECT_REFUSED(read_idx(swapped.images, swapped.labels), swapped.images.string(),
                 "bad IDX magic 0x00000801", "expected 0x00000803", "labels file");
  IdxFiles wrong_labels(idx(2051, {3, 2, 4}, 24), idx(2051, {3, 2, 4}, 24));
  EXPECT_REFUSED(read_idx(wrong_labels.images, wrong_labels.labels), wrong_labels.labels.string(),
                 "bad IDX magic 0x00000803", "expected 0x00000801");
  IdxFiles text_file(text("hello, world!!!!!!!!"), kThreeLabels);
  EXPECT_REFUSED(read_idx(text_file.images, text_file.labels), "train-images-idx3-ubyte",
                 "bad IDX magic 0x68656c6c", "not an IDX file");
  IdxFiles floats(idx(0x0d03, {3, 2, 4}, 96), kThreeLabels);
  EXPECT_REFUSED(read_idx(floats.images, floats.labels), "train-images-idx3-ubyte",
                 "magic 0x00000d03", "not of unsigned bytes");
}

TEST(MalformedIdx, ShortHeaderIsNamed) {
  IdxFiles files(Bytes{0, 0, 8, 3, 0, 0, 0, 3, 0, 0}, kThreeLabels);
  EXPECT_REFUSED(read_idx(files.images, files.labels), "train-images-idx3-ubyte",
                 "too short to be an IDX images file: 10 bytes", "header alone needs 16");
}

TEST(MalformedIdx, DimensionFieldsAreBounded) {
  IdxFiles zero_rows(idx(2051, {3, 0, 4}, 0), kThreeLabels);
  EXPECT_REFUSED(read_idx(zero_rows.images, zero_rows.labels), "train-images-idx3-ubyte",
                 "IDX header field 'rows' is 0, outside 1 to 16384");
  IdxFiles wide(idx(2051, {3, 2, 16385}, 0), kThreeLabels);
  EXPECT_REFUSED(read_idx(wide.images, wide.labels), "train-images-idx3-ubyte",
                 "'columns' is 16385, outside 1 to 16384");
  // 0xffffffff would be negative as int32: it must not wrap.
  IdxFiles huge(idx(2051, {3, 0xffffffffu, 4}, 0), kThreeLabels);
  EXPECT_REFUSED(read_idx(huge.images, huge.labels), "'rows' is 4294967295");
  IdxFiles many(idx(2051, {100'000'001, 1, 1}, 0), kThreeLabels);
  EXPECT_REFUSED(read_idx(many.images, many.labels), "train-images-idx3-ubyte",
                 "'count' is 100000001, outside 0 to 100000000");
  IdxFiles many_labels(idx(2051, {3, 2, 4}, 24), idx(2049, {0xffffffffu}, 0));
  EXPECT_REFUSED(read_idx(many_labels.images, many_labels.labels), "train-labels-idx1-ubyte",
                 "'count' is 4294967295");
}

TEST(MalformedIdx, ImageAndPayloadSizesAreBoundedBeforeAllocating) {
  IdxFiles square(idx(2051, {1, 16384, 16384}, 0), kThreeLabels);
  EXPECT_REFUSED(read_idx(square.images, square.labels), "train-images-idx3-ubyte",
                 "'rows' x 'columns' give 268435456 pixels per image, over the limit of 67108864");
  // 1e8 images of 28 x 28: 78 GB promised by a 16-byte file.
  IdxFiles promised(idx(2051, {100'000'000, 28, 28}, 0), kThreeLabels);
  EXPECT_REFUSED(
      read_idx(promised.images, promised.labels), "train-images-idx3-ubyte",
      "'count' 100000000 gives 78400000000 bytes of images, over the limit of 4294967296");
}

TEST(MalformedIdx, TruncatedAndOverlongPayloadsAreMeasured) {
  Bytes short_images = idx(2051, {3, 2, 4}, 21);
  IdxFiles truncated(short_images, kThreeLabels);
  EXPECT_REFUSED(read_idx(truncated.images, truncated.labels),
                 "'" + truncated.images.string() +
                     "': header says 3 images of 2x4 but the file holds 21 bytes of pixels "
                     "(truncated), not 24");
  IdxFiles trailing(idx(2051, {3, 2, 4}, 30), kThreeLabels);
  EXPECT_REFUSED(read_idx(trailing.images, trailing.labels), "train-images-idx3-ubyte",
                 "holds 30 bytes of pixels (trailing bytes), not 24");
  IdxFiles labels(idx(2051, {3, 2, 4}, 24), idx(2049, {3}, 2));
  EXPECT_REFUSED(read_idx(labels.images, labels.labels), "train-labels-idx1-ubyte",
                 "header says 3 labels but the file holds 2 bytes of labels (truncated)");
}

TEST(MalformedIdx, CountMismatchNamesBothFiles) {
  IdxFiles files(idx(2051, {3, 2, 4}, 24), idx(2049, {2}, 2));
  EXPECT_REFUSED(read_idx(files.images, files.labels), "train-images-idx3-ubyte' has 3 images",
                 "train-labels-idx1-ubyte' has 2 labels", "'count'");
}

TEST(MalformedIdx, LabelOutsideTheClassesNamesItem) {
  TempDir tmp;
  write_bytes(tmp / "train-images-idx3-ubyte", idx(2051, {3, 1, 1}, 3));
  Bytes labels = idx(2049, {3}, 3, 0);
  labels[8 + 1] = 10;  // item 1
  write_bytes(tmp / "train-labels-idx1-ubyte", labels);
  write_bytes(tmp / "t10k-images-idx3-ubyte", idx(2051, {1, 1, 1}, 1));
  write_bytes(tmp / "t10k-labels-idx1-ubyte", idx(2049, {1}, 1, 0));
  EXPECT_REFUSED(read_mnist_folder(tmp.path(), "mnist"), "train-labels-idx1-ubyte",
                 "item 1 has label 10 but the dataset has 10 classes (0 to 9)");
}

TEST(MalformedIdx, CorruptOrTruncatedGzipIsNamed) {
  const Bytes images = idx(2051, {3, 2, 4}, 24);
  Bytes corrupt = gzip_bytes(images);
  corrupt[corrupt.size() - 6] ^= 0xff;  // the CRC-32 in the trailer
  IdxFiles bad_crc(corrupt, kThreeLabels);
  EXPECT_REFUSED(read_idx(bad_crc.images, bad_crc.labels), "train-images-idx3-ubyte",
                 "is not a valid gzip file (incorrect data check");
  Bytes cut = gzip_bytes(images);
  cut.resize(cut.size() - 12);
  IdxFiles truncated(cut, kThreeLabels);
  EXPECT_REFUSED(read_idx(truncated.images, truncated.labels), "train-images-idx3-ubyte",
                 "not a valid gzip file (truncated");
  IdxFiles garbage(Bytes{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 0xff},
                   kThreeLabels);
  EXPECT_REFUSED(read_idx(garbage.images, garbage.labels), "train-images-idx3-ubyte",
                 "not a valid gzip file");
  // A gzipped file whose payload stops short: counted in inflated bytes.
  IdxFiles short_payload(gzip_bytes(idx(2051, {3, 2, 4}, 16)), kThreeLabels);
  EXPECT_REFUSED(read_idx(short_payload.images, short_payload.labels), "train-images-idx3-ubyte",
                 "header says 3 images of 2x4 but the inflated file holds 16 bytes of pixels "
                 "(truncated)");
}

TEST(MalformedIdx, GzipBombsFailWithoutInflatingEverything) {
  // A header promising 2 GB with 60 bytes of gzip: refused before inflating or allocating.
  const Bytes promise = gzip_bytes(idx(2051, {50'000, 200, 200}, 0));
  IdxFiles impossible(promise, kThreeLabels);
  EXPECT_REFUSED(read_idx(impossible.images, impossible.labels), "train-images-idx3-ubyte",
                 "header says 50000 images of 200x200 (2000000000 bytes of pixels)",
                 "cannot inflate to that much");
  // 64 MiB of zeros behind a header promising 3 x 2 x 4: only 25 bytes are ever inflated.
  Bytes bomb = idx(2051, {3, 2, 4}, 24);
  bomb.resize(bomb.size() + (size_t{64} << 20), 0);
  IdxFiles trailing(gzip_bytes(bomb), kThreeLabels);
  EXPECT_LT(fs::file_size(trailing.images), 100'000u);
  EXPECT_REFUSED(read_idx(trailing.images, trailing.labels), "train-images-idx3-ubyte",
                 "inflated file holds more than 24 bytes of pixels (trailing bytes)");
}

TEST(MalformedIdx, ConcatenatedGzipMembersAreOneFile) {
  const Bytes images = idx(2051, {3, 2, 4}, 24, 9);
  const Bytes head(images.begin(), images.begin() + 10), tail(images.begin() + 10, images.end());
  IdxFiles files(gzip_bytes(head) + gzip_bytes(tail), gzip_bytes(kThreeLabels));
  const Dataset data = read_idx(files.images, files.labels);
  EXPECT_EQ(data.images.sizes(), (std::vector<int64_t>{3, 2, 4, 1}));
  EXPECT_EQ(data.images.sum().item<int64_t>(), 24 * 9);
  EXPECT_EQ(data.labels.sum().item<int64_t>(), 6);
}

// ---- CIFAR-10 ---------------------------------------------------------------------------

Bytes cifar_record(uint8_t label) {
  Bytes out(3073, 7);
  out[0] = label;
  return out;
}

TEST(MalformedCifar10, SizeMustBeWholeRecords) {
  TempDir tmp;
  write_bytes(tmp / "data_batch_1.bin", cifar_record(1) + Bytes(100, 0));
  EXPECT_REFUSED(read_cifar10_batch(tmp / "data_batch_1.bin"), "data_batch_1.bin",
                 "its size 3173 is not a positive multiple of the 3073-byte record");
  write_bytes(tmp / "empty.bin", Bytes{});
  EXPECT_REFUSED(read_cifar10_batch(tmp / "empty.bin"), "empty.bin", "its size 0");
  EXPECT_REFUSED(read_cifar10_batch(tmp / "absent.bin"), "missing CIFAR-10 batch", "absent.bin");
}

TEST(MalformedCifar10, LabelOutOfRangeNamesTheRecord) {
  TempDir tmp;
  write_bytes(tmp / "test_batch.bin", cifar_record(9) + cifar_record(10));
  EXPECT_REFUSED(read_cifar10_batch(tmp / "test_batch.bin"), "test_batch.bin",
                 "record 1 (byte offset 3073) has label 10 (CIFAR-10 labels are 0-9)");
  write_bytes(tmp / "ok.bin", cifar_record(9) + cifar_record(0));
  const Dataset batch = read_cifar10_batch(tmp / "ok.bin");
  EXPECT_EQ(batch.images.sizes(), (std::vector<int64_t>{2, 32, 32, 3}));
  EXPECT_EQ(batch.labels[0].item<int64_t>(), 9);
}

// ---- PPM --------------------------------------------------------------------------------

TEST(MalformedPpm, EveryHeaderFieldIsChecked) {
  TempDir tmp;
  const auto refused = [&](const std::string& name, const Bytes& bytes,
                           const std::vector<std::string>& parts) {
    write_bytes(tmp / name, bytes);
    nad::test::expect_user_error([&] { read_ppm(tmp / name); }, parts);
    // read_image takes the same path for PPM files.
    nad::test::expect_user_error([&] { read_image(tmp / name, 3); }, parts);
  };
  refused("p5.ppm", text("P5\n1 1\n255\n") + Bytes(1), {"p5.ppm", "expected magic 'P6'"});
  refused("glued.ppm", text("P61 1 255\n") + Bytes(3), {"glued.ppm", "bad magic"});
  refused("w0.ppm", text("P6\n0 1\n255\n"), {"w0.ppm", "bad PPM width '0'"});
  refused("wx.ppm", text("P6\nabc 1\n255\n"), {"wx.ppm", "bad PPM width 'abc'"});
  refused("h-.ppm", text("P6\n1 -1\n255\n"), {"h-.ppm", "bad PPM height '-1'"});
  refused("wide.ppm", text("P6\n16385 1\n255\n"),
          {"wide.ppm", "PPM width 16385 is outside 1 to 16384"});
  refused("tall.ppm", text("P6\n1 20000\n255\n"),
          {"tall.ppm", "PPM height 20000 is outside 1 to 16384"});
  refused("big.ppm", text("P6\n16384 8192\n255\n"),
          {"big.ppm", "PPM width x height 16384x8192 is over the limit of 67108864 pixels"});
  refused("deep.ppm", text("P6\n1 1\n65535\n") + Bytes(6),
          {"deep.ppm", "PPM maxval 65535 is not supported"});
  refused("m0.ppm", text("P6\n1 1\n0\n") + Bytes(3), {"m0.ppm", "bad PPM maxval '0'"});
  refused("nosep.ppm", text("P6\n1 1\n255"), {"nosep.ppm", "PPM header is truncated"});
  refused("short.ppm", text("P6\n3 2\n255\n") + Bytes(17),
          {"short.ppm", "3x2 PPM needs 18 pixel bytes, found 17"});
  refused("long.ppm", text("P6\n1 1\n255\n") + Bytes(5),
          {"long.ppm", "2 unexpected bytes after the PPM pixels"});
}

// ---- PNG, JPEG, BMP (stb) -----------------------------------------------------------------

Bytes png_chunk(const std::string& kind, const Bytes& data) {
  Bytes out;
  put_be32(out, static_cast<uint32_t>(data.size()));
  Bytes body = text(kind) + data;
  out = out + body;
  put_be32(out, static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
  return out;
}

// An 8-bit RGB PNG of `width` x `height` whose image data holds `rows` filtered rows.
Bytes png(uint32_t width, uint32_t height, uint32_t rows) {
  Bytes ihdr;
  put_be32(ihdr, width);
  put_be32(ihdr, height);
  ihdr = ihdr + Bytes{8, 2, 0, 0, 0};
  Bytes raw;
  for (uint32_t r = 0; r < rows; ++r) {
    raw.push_back(0);
    raw.insert(raw.end(), width * 3, 100);
  }
  uLongf size = compressBound(raw.size());
  Bytes packed(size);
  EXPECT_EQ(compress(packed.data(), &size, raw.data(), raw.size()), Z_OK);
  packed.resize(size);
  return Bytes{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'} + png_chunk("IHDR", ihdr) +
         png_chunk("IDAT", packed) + png_chunk("IEND", {});
}

// A 24-bit BMP header (no pixels unless given).
Bytes bmp(int32_t width, int32_t height, const Bytes& pixels = {}) {
  Bytes out = text("BM");
  put_le32(out, 54 + static_cast<uint32_t>(pixels.size()));
  put_le32(out, 0);
  put_le32(out, 54);
  put_le32(out, 40);
  put_le32(out, static_cast<uint32_t>(width));
  put_le32(out, static_cast<uint32_t>(height));
  put_le16(out, 1);
  put_le16(out, 24);
  for (int i = 0; i < 6; ++i) put_le32(out, 0);
  return out + pixels;
}

// A JPEG that stops after its frame header (SOF0, 3 components).
Bytes jpeg_header(uint16_t width, uint16_t height) {
  Bytes out{0xff, 0xd8, 0xff, 0xc0, 0, 17, 8};
  out.push_back(static_cast<uint8_t>(height >> 8));
  out.push_back(static_cast<uint8_t>(height));
  out.push_back(static_cast<uint8_t>(width >> 8));
  out.push_back(static_cast<uint8_t>(width));
  out = out + Bytes{3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0};
  return out;
}

TEST(MalformedImage, ValidPngAndBmpDecode) {
  TempDir tmp;
  write_bytes(tmp / "ok.png", png(5, 4, 4));
  const torch::Tensor image = read_image(tmp / "ok.png", 3);
  EXPECT_EQ(image.sizes(), (std::vector<int64_t>{4, 5, 3}));
  EXPECT_EQ(image.min().item<int>(), 100);
  const ImageInfo info = read_image_info(tmp / "ok.png");
  EXPECT_EQ(info.width, 5);
  EXPECT_EQ(info.height, 4);
  EXPECT_EQ(info.channels, 3);
  write_bytes(tmp / "ok.bmp", bmp(1, 2, Bytes{1, 2, 3, 0, 4, 5, 6, 0}));
  const torch::Tensor small = read_image(tmp / "ok.bmp", 3);
  ASSERT_EQ(small.sizes(), (std::vector<int64_t>{2, 1, 3}));
  // Bottom-up rows, BGR.
  EXPECT_EQ(small[0][0][0].item<int>(), 6);
  EXPECT_EQ(small[1][0][2].item<int>(), 1);
}

TEST(MalformedImage, UnknownFormatsNeverReachStb) {
  TempDir tmp;
  write_bytes(tmp / "a.gif", text("GIF89a\x01\x00\x01\x00\x00\x00\x00;"));
  EXPECT_REFUSED(read_image(tmp / "a.gif", 3), "a.gif", "not a PNG, JPEG, BMP or binary PPM");
  write_bytes(tmp / "a.tga", Bytes{0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 24, 0, 1, 2, 3});
  EXPECT_REFUSED(read_image_info(tmp / "a.tga"), "a.tga", "unknown magic bytes");
  write_bytes(tmp / "empty.png", Bytes{});
  EXPECT_REFUSED(read_image(tmp / "empty.png", 1), "empty.png", "not a PNG");
}

TEST(MalformedImage, OversizedDimensionsAreRefusedFromTheHeader) {
  TempDir tmp;
  write_bytes(tmp / "wide.png", png(20000, 1, 0));
  EXPECT_REFUSED(read_image(tmp / "wide.png", 3), "wide.png",
                 "PNG width 20000 is outside 1 to 16384");
  EXPECT_REFUSED(read_image_info(tmp / "wide.png"), "wide.png", "PNG width 20000");
  write_bytes(tmp / "big.png", png(10000, 10000, 0));
  EXPECT_REFUSED(read_image(tmp / "big.png", 1), "big.png",
                 "PNG width x height 10000x10000 is over the limit of 67108864 pixels");
  write_bytes(tmp / "tall.bmp", bmp(1, 30000));
  EXPECT_REFUSED(read_image(tmp / "tall.bmp", 3), "tall.bmp",
                 "BMP height 30000 is outside 1 to 16384");
  write_bytes(tmp / "big.jpg", jpeg_header(60000, 2000));
  EXPECT_REFUSED(read_image(tmp / "big.jpg", 3), "big.jpg",
                 "JPEG width 60000 is outside 1 to 16384");
}

TEST(MalformedImage, CorruptDataIsNamed) {
  TempDir tmp;
  write_bytes(tmp / "rows.png", png(5, 4, 2));  // two of four rows
  EXPECT_REFUSED(read_image(tmp / "rows.png", 3), "rows.png", "PNG data is corrupt");
  Bytes header = png(5, 4, 4);
  header.resize(20);
  write_bytes(tmp / "cut.png", header);
  EXPECT_REFUSED(read_image(tmp / "cut.png", 3), "cut.png", "bad PNG header");
  write_bytes(tmp / "zero.jpg", jpeg_header(0, 8));
  EXPECT_REFUSED(read_image(tmp / "zero.jpg", 3), "zero.jpg", "bad JPEG header");
  write_bytes(tmp / "cut.bmp", text("BM\x10\x00"));
  EXPECT_REFUSED(read_image(tmp / "cut.bmp", 3), "cut.bmp", "bad BMP header");
}

TEST(MalformedImage, JpegHuffmanTablesWithTooManyCodesNeverReachStb) {
  // stb_image 2.27 writes past its 256-entry tables when a DHT's 16 code counts add up to
  // more (found by fuzz/image_fuzzer). Here 16 x 17 = 272 codes, before and after a scan.
  TempDir tmp;
  Bytes before{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0xff, 0xc4, 0xff, 0xc4, 0x00, 19, 0x00};
  before.insert(before.end(), 16, 17);
  write_bytes(tmp / "dht.jpg", before);
  EXPECT_REFUSED(read_image(tmp / "dht.jpg", 3), "dht.jpg",
                 "bad JPEG header (a Huffman table declares more than 256 codes)");
  EXPECT_REFUSED(read_image_info(tmp / "dht.jpg"), "dht.jpg", "more than 256 codes");
  Bytes after{0xff, 0xd8, 0xff, 0xda, 0x00, 0x02, 0x12, 0x00, 0xff, 0xc4, 0x00, 19, 0x11};
  after.insert(after.end(), 16, 17);
  write_bytes(tmp / "scan.jpg", after);
  EXPECT_REFUSED(read_image(tmp / "scan.jpg", 1), "scan.jpg", "more than 256 codes");

  // Real JPEGs (stb_image_write's, with their standard tables) still decode.
  Bytes pixels(16 * 8 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(stbi_write_jpg((tmp / "ok.jpg").c_str(), 16, 8, 3, pixels.data(), 90));
  EXPECT_EQ(read_image(tmp / "ok.jpg", 3).sizes(), (std::vector<int64_t>{8, 16, 3}));
  EXPECT_EQ(read_image_info(tmp / "ok.jpg").channels, 3);
}

// ---- GTSRB annotations ------------------------------------------------------------------

const std::string kHeader = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n";

TEST(MalformedGtsrbCsv, ReadsRowsWithLineNumbers) {
  TempDir tmp;
  write_bytes(tmp / "GT-00001.csv",
              text(kHeader + "a.ppm;29;30;5;6;24;25;1\r\n\nb.ppm;10;10;0;0;10;10;1"));
  const std::vector<GtsrbAnnotation> rows = read_gtsrb_annotations(tmp / "GT-00001.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].filename, "a.ppm");
  EXPECT_EQ(rows[1].filename, "b.ppm");
  EXPECT_EQ(rows[1].class_id, 1);
  EXPECT_EQ(rows[1].line, 4u);
}

TEST(MalformedGtsrbCsv, EveryColumnIsChecked) {
  TempDir tmp;
  const auto refused = [&](const std::string& csv, const std::vector<std::string>& parts) {
    write_bytes(tmp / "GT-00003.csv", text(csv));
    nad::test::expect_user_error([&] { read_gtsrb_annotations(tmp / "GT-00003.csv"); }, parts);
  };
  refused("", {"GT-00003.csv", "is empty (no header row)"});
  refused("Filename;Width\na.ppm;3\n", {"GT-00003.csv' line 1", "missing 'ClassId'"});
  refused("ClassId\n3\n", {"GT-00003.csv' line 1", "missing 'Filename'"});
  refused(kHeader + "a.ppm;29;30;5;6;24;25;3\nb.ppm;29\n",
          {"GT-00003.csv' line 3 has 2 columns but the header names 8"});
  refused(kHeader + "a.ppm;29;30;5;6;24;25;x3\n", {"line 2: bad ClassId 'x3'"});
  refused(kHeader + "a.ppm;29;30;5;6;24;25;100000\n",
          {"GT-00003.csv' line 2", "ClassId 100000 is over the limit of 99999"});
  refused(kHeader + ";29;30;5;6;24;25;3\n", {"line 2 has an empty Filename"});
  refused(kHeader + "../x.ppm;29;30;5;6;24;25;3\n",
          {"line 2: Filename '../x.ppm' must be a plain file name"});
  refused(kHeader + "a.ppm;abc;30;5;6;24;25;3\n", {"line 2: bad Width 'abc'"});
  refused(kHeader + "a.ppm;29;-30;5;6;24;25;3\n", {"line 2: bad Height '-30'"});
  refused(kHeader + "a.ppm;0;30;0;0;0;0;3\n", {"line 2: Width 0 is outside 1 to 16384"});
  refused(kHeader + "a.ppm;29;99999;5;6;24;25;3\n", {"line 2: Height 99999 is outside 1 to 16384"});
  refused(kHeader + "a.ppm;10;10;1;1;11;5;3\n",
          {"GT-00003.csv' line 2: ROI Roi.X2 11 is outside the image (Width 10)"});
  refused(kHeader + "a.ppm;10;10;1;1;5;12;3\n", {"ROI Roi.Y2 12 is outside the image (Height 10)"});
  refused(kHeader + "a.ppm;10;10;6;1;5;5;3\n", {"ROI Roi.X1 6 is past Roi.X2 5"});
  refused(kHeader + "a.ppm;10;10;1;1;5;;3\n", {"line 2: bad Roi.Y2 ''"});
}

TEST(MalformedGtsrbCsv, BadAnnotationsStopReadGtsrb) {
  TempDir tmp;
  const fs::path folder = tmp / "Final_Training" / "Images" / "00000";
  write_bytes(folder / "a.ppm", text("P6\n1 1\n255\n") + Bytes(3, 9));
  write_bytes(folder / "GT-00000.csv", text(kHeader + "a.ppm;1;1;0;0;2;1;0\n"));
  write_bytes(tmp / "Final_Test" / "Images" / "b.ppm", text("P6\n1 1\n255\n") + Bytes(3, 9));
  write_bytes(tmp / "Final_Test" / "GT-final_test.csv", text("Filename;ClassId\nb.ppm;0\n"));
  EXPECT_REFUSED(read_gtsrb(tmp.path()), (folder / "GT-00000.csv").string() + "' line 2",
                 "Roi.X2 2 is outside the image (Width 1)");
  write_bytes(folder / "GT-00000.csv", text(kHeader + "a.ppm;1;1;0;0;1;1;0\n"));
  EXPECT_EQ(read_gtsrb(tmp.path()).train.size(), 1);
}

// ---- Image folders ----------------------------------------------------------------------

TEST(MalformedImageFolder, ImageSizeAndFirstImageAreBounded) {
  TempDir tmp;
  write_bytes(tmp / "train" / "a" / "1.ppm", text("P6\n20000 1\n255\n"));
  write_bytes(tmp / "test" / "a" / "1.ppm", text("P6\n1 1\n255\n") + Bytes(3));
  EXPECT_REFUSED(read_image_folder(tmp.path(), 0, "folder"), "train/a/1.ppm",
                 "PPM width 20000 is outside 1 to 16384");
  EXPECT_REFUSED(read_image_folder(tmp.path(), 20000, "folder"), "--image-size must be 1 to 16384",
                 "got 20000");
  write_bytes(tmp / "train" / "a" / "1.ppm", png(3, 2, 2));
  write_bytes(tmp / "test" / "a" / "1.ppm", png(3, 2, 1));
  EXPECT_REFUSED(read_image_folder(tmp.path(), 0, "folder"), "test/a/1.ppm", "PNG data is corrupt");
}

}  // namespace
}  // namespace nad::data
