#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <zlib.h>

#include <algorithm>
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

using nad::test::user_error_message;

#define EXPECT_USER_ERROR_CONTAINS(statement, text)                        \
  do {                                                                     \
    const std::string message_ = user_error_message([&] { statement; });   \
    EXPECT_NE(message_.find(text), std::string::npos)                      \
        << "message: " << message_ << "\nexpected to contain: " << (text); \
  } while (0)

// ---- IDX fixtures ----------------------------------------------------------------------

void put_be32(Bytes& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(value >> shift));
}

Bytes idx_file(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes out;
  put_be32(out, magic);
  for (uint32_t dim : dims) put_be32(out, dim);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// Image i, row r, column c holds i * 50 + r * 10 + c, so a transposed or shifted read shows.
Bytes idx_pixels(int count, int rows, int cols) {
  Bytes pixels;
  for (int i = 0; i < count; ++i) {
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) pixels.push_back(static_cast<uint8_t>(i * 50 + r * 10 + c));
    }
  }
  return pixels;
}

void write_gzip(const fs::path& file, const Bytes& bytes) {
  fs::create_directories(file.parent_path());
  gzFile out = gzopen(file.c_str(), "wb");
  ASSERT_NE(out, nullptr);
  ASSERT_EQ(gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(out), Z_OK);
}

void expect_idx_pixels(const Dataset& data, int count, int rows, int cols) {
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{count, rows, cols, 1}));
  ASSERT_EQ(data.images.scalar_type(), torch::kUInt8);
  auto pixels = data.images.accessor<uint8_t, 4>();
  for (int i = 0; i < count; ++i) {
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) ASSERT_EQ(pixels[i][r][c][0], i * 50 + r * 10 + c);
    }
  }
}

std::vector<int64_t> as_vector(const torch::Tensor& labels) {
  const torch::Tensor flat = labels.contiguous();
  return std::vector<int64_t>(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
}

// Writes the four standard MNIST files: 3 train and 2 test images of 2 x 4 pixels.
void write_mnist_folder(const fs::path& dir, bool gzip, const std::string& sep = "-") {
  const auto write = [&](const std::string& name, const Bytes& bytes) {
    if (gzip) {
      write_gzip(dir / (name + ".gz"), bytes);
    } else {
      write_bytes(dir / name, bytes);
    }
  };
  write("train-images" + sep + "idx3-ubyte", idx_file(2051, {3, 2, 4}, idx_pixels(3, 2, 4)));
  write("train-labels" + sep + "idx1-ubyte", idx_file(2049, {3}, {7, 0, 9}));
  write("t10k-images" + sep + "idx3-ubyte", idx_file(2051, {2, 2, 4}, idx_pixels(2, 2, 4)));
  write("t10k-labels" + sep + "idx1-ubyte", idx_file(2049, {2}, {3, 5}));
}

TEST(IdxReader, ReadsUncompressedFiles) {
  TempDir tmp;
  write_bytes(tmp / "images", idx_file(2051, {3, 2, 4}, idx_pixels(3, 2, 4)));
  write_bytes(tmp / "labels", idx_file(2049, {3}, {7, 0, 255}));
  const Dataset data = read_idx(tmp / "images", tmp / "labels");
  expect_idx_pixels(data, 3, 2, 4);
  EXPECT_EQ(data.labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(as_vector(data.labels), (std::vector<int64_t>{7, 0, 255}));
}

TEST(IdxReader, ReadsGzippedFolder) {
  TempDir tmp;
  write_mnist_folder(tmp.path(), /*gzip=*/true);
  const DatasetPair pair = read_mnist_folder(tmp.path(), "fashion-mnist");
  expect_idx_pixels(pair.train, 3, 2, 4);
  expect_idx_pixels(pair.test, 2, 2, 4);
  EXPECT_EQ(as_vector(pair.train.labels), (std::vector<int64_t>{7, 0, 9}));
  EXPECT_EQ(as_vector(pair.test.labels), (std::vector<int64_t>{3, 5}));
  ASSERT_EQ(pair.num_classes(), 10);
  EXPECT_EQ(pair.class_names[0], "T-shirt/top");
  EXPECT_EQ(pair.class_names[9], "Ankle boot");
}

TEST(IdxReader, AcceptsDottedNames) {
  TempDir tmp;
  write_mnist_folder(tmp.path(), /*gzip=*/false, ".");
  const DatasetPair pair = read_mnist_folder(tmp.path(), "mnist");
  expect_idx_pixels(pair.train, 3, 2, 4);
  EXPECT_EQ(pair.class_names,
            (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
}

TEST(IdxReader, RejectsBadMagic) {
  TempDir tmp;
  write_bytes(tmp / "bad-images", idx_file(2049, {3, 2, 4}, idx_pixels(3, 2, 4)));
  write_bytes(tmp / "labels", idx_file(2049, {3}, {1, 2, 3}));
  EXPECT_USER_ERROR_CONTAINS(read_idx(tmp / "bad-images", tmp / "labels"), "bad-images");
  write_bytes(tmp / "images", idx_file(2051, {3, 2, 4}, idx_pixels(3, 2, 4)));
  write_bytes(tmp / "bad-labels", idx_file(2051, {3}, {1, 2, 3}));
  EXPECT_USER_ERROR_CONTAINS(read_idx(tmp / "images", tmp / "bad-labels"), "bad-labels");
}

TEST(IdxReader, RejectsTruncatedPayload) {
  TempDir tmp;
  Bytes images = idx_file(2051, {3, 2, 4}, idx_pixels(3, 2, 4));
  images.pop_back();
  write_bytes(tmp / "short-images", images);
  write_bytes(tmp / "labels", idx_file(2049, {3}, {1, 2, 3}));
  EXPECT_USER_ERROR_CONTAINS(read_idx(tmp / "short-images", tmp / "labels"), "short-images");
  // Truncated inside the gzip stream too.
  Bytes labels = idx_file(2049, {3}, {1, 2});
  write_gzip(tmp / "short-labels.gz", labels);
  write_bytes(tmp / "images", idx_file(2051, {3, 2, 4}, idx_pixels(3, 2, 4)));
  EXPECT_USER_ERROR_CONTAINS(read_idx(tmp / "images", tmp / "short-labels.gz"), "short-labels.gz");
}

TEST(IdxReader, RejectsCountMismatch) {
  TempDir tmp;
  write_bytes(tmp / "images", idx_file(2051, {3, 2, 4}, idx_pixels(3, 2, 4)));
  write_bytes(tmp / "two-labels", idx_file(2049, {2}, {1, 2}));
  EXPECT_USER_ERROR_CONTAINS(read_idx(tmp / "images", tmp / "two-labels"), "two-labels");
}

TEST(IdxReader, MissingFileIsNamed) {
  TempDir tmp;
  write_mnist_folder(tmp.path(), /*gzip=*/false);
  fs::remove(tmp / "t10k-labels-idx1-ubyte");
  EXPECT_USER_ERROR_CONTAINS(read_mnist_folder(tmp.path(), "mnist"), "t10k-labels-idx1-ubyte");
}

TEST(IdxReader, RejectsLabelsOutsideTheClasses) {
  TempDir tmp;
  write_mnist_folder(tmp.path(), /*gzip=*/false);
  write_bytes(tmp / "train-labels-idx1-ubyte", idx_file(2049, {3}, {1, 10, 2}));
  EXPECT_USER_ERROR_CONTAINS(read_mnist_folder(tmp.path(), "mnist"), "train-labels-idx1-ubyte");
}

// ---- CIFAR-10 binary --------------------------------------------------------------------

uint8_t cifar_pixel(int record, int channel, int y, int x) {
  return static_cast<uint8_t>(record * 37 + channel * 101 + y * 7 + x * 3);
}

// `count` records whose labels are first_label, first_label + 1, ... (mod 10), planes in
// R, G, B order as in the official files; record numbers continue from `first_record`.
Bytes cifar_batch(int first_record, int count, int first_label) {
  Bytes out;
  for (int r = first_record; r < first_record + count; ++r) {
    out.push_back(static_cast<uint8_t>((first_label + r - first_record) % 10));
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) out.push_back(cifar_pixel(r, c, y, x));
      }
    }
  }
  return out;
}

// Train: data_batch_1 has 2 records, batches 2-5 one each (records 0-5, labels 0-5).
// Test: 2 records (records 6-7, labels 8, 9).
void write_cifar_binary(const fs::path& dir) {
  write_bytes(dir / "data_batch_1.bin", cifar_batch(0, 2, 0));
  for (int b = 2; b <= 5; ++b) {
    write_bytes(dir / ("data_batch_" + std::to_string(b) + ".bin"), cifar_batch(b, 1, b));
  }
  write_bytes(dir / "test_batch.bin", cifar_batch(6, 2, 8));
}

void expect_cifar_pixels(const Dataset& data, int first_record) {
  ASSERT_EQ(data.images.size(1), 32);
  ASSERT_EQ(data.images.size(2), 32);
  ASSERT_EQ(data.images.size(3), 3);
  auto pixels = data.images.accessor<uint8_t, 4>();
  for (int64_t i = 0; i < data.size(); ++i) {
    for (int y = 0; y < 32; ++y) {
      for (int x = 0; x < 32; ++x) {
        for (int c = 0; c < 3; ++c) {
          ASSERT_EQ(pixels[i][y][x][c], cifar_pixel(first_record + i, c, y, x))
              << "image " << i << " y " << y << " x " << x << " c " << c;
        }
      }
    }
  }
}

TEST(Cifar10Reader, ReadsHwcPixelsAndLabels) {
  TempDir tmp;
  write_cifar_binary(tmp.path());
  const DatasetPair pair = read_cifar10_binary(tmp.path());
  ASSERT_EQ(pair.train.size(), 6);
  ASSERT_EQ(pair.test.size(), 2);
  EXPECT_TRUE(pair.train.images.is_contiguous());
  expect_cifar_pixels(pair.train, 0);
  expect_cifar_pixels(pair.test, 6);
  EXPECT_EQ(as_vector(pair.train.labels), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(as_vector(pair.test.labels), (std::vector<int64_t>{8, 9}));
  ASSERT_EQ(pair.num_classes(), 10);
  EXPECT_EQ(pair.class_names[0], "airplane");
  EXPECT_EQ(pair.class_names[9], "truck");
}

TEST(Cifar10Reader, FindsBatchesSubfolder) {
  TempDir tmp;
  write_cifar_binary(tmp / "cifar-10-batches-bin");
  const DatasetPair pair = read_cifar10_binary(tmp.path());
  ASSERT_EQ(pair.train.size(), 6);
  expect_cifar_pixels(pair.test, 6);
}

TEST(Cifar10Reader, RejectsTruncatedBatch) {
  TempDir tmp;
  write_cifar_binary(tmp.path());
  Bytes test = cifar_batch(6, 2, 8);
  test.resize(test.size() - 100);
  write_bytes(tmp / "test_batch.bin", test);
  EXPECT_USER_ERROR_CONTAINS(read_cifar10_binary(tmp.path()), "test_batch.bin");
}

TEST(Cifar10Reader, RejectsBadLabelAndMissingBatch) {
  TempDir tmp;
  write_cifar_binary(tmp.path());
  Bytes batch = cifar_batch(2, 1, 2);
  batch[0] = 10;
  write_bytes(tmp / "data_batch_2.bin", batch);
  EXPECT_USER_ERROR_CONTAINS(read_cifar10_binary(tmp.path()), "data_batch_2.bin");
  fs::remove(tmp / "data_batch_3.bin");
  write_bytes(tmp / "data_batch_2.bin", cifar_batch(2, 1, 2));
  EXPECT_USER_ERROR_CONTAINS(read_cifar10_binary(tmp.path()), "data_batch_3.bin");
}

// ---- PPM and generic images -------------------------------------------------------------

Bytes ppm(const std::string& header, const Bytes& pixels) {
  Bytes out(header.begin(), header.end());
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

// W x H x 3 bytes where pixel (y, x) channel c is y * 40 + x * 10 + c.
Bytes rgb_pattern(int width, int height) {
  Bytes out;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) out.push_back(static_cast<uint8_t>(y * 40 + x * 10 + c));
    }
  }
  return out;
}

void expect_rgb_pattern(const torch::Tensor& image, int width, int height) {
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{height, width, 3}));
  auto pixels = image.accessor<uint8_t, 3>();
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) ASSERT_EQ(pixels[y][x][c], y * 40 + x * 10 + c);
    }
  }
}

TEST(PpmReader, ReadsHeaderWithComments) {
  TempDir tmp;
  // Comments on their own line, after a token and between tokens; tabs as separators.
  write_bytes(tmp / "a.ppm",
              ppm("P6\n# made by a test\n3 #width\n\t2\n# maxval next\n255\n", rgb_pattern(3, 2)));
  expect_rgb_pattern(read_ppm(tmp / "a.ppm"), 3, 2);
  // The byte after maxval is whitespace and the raster may start with a whitespace value.
  Bytes pixels = rgb_pattern(2, 2);
  pixels[0] = '\n';
  const torch::Tensor image =
      read_ppm((write_bytes(tmp / "b.ppm", ppm("P6 2 2 255\n", pixels)), tmp / "b.ppm"));
  EXPECT_EQ(image[0][0][0].item<int>(), '\n');
  EXPECT_EQ(image[1][1][2].item<int>(), 1 * 40 + 1 * 10 + 2);
}

TEST(PpmReader, RejectsTruncatedAndUnsupportedFiles) {
  TempDir tmp;
  Bytes pixels = rgb_pattern(3, 2);
  pixels.pop_back();
  write_bytes(tmp / "short.ppm", ppm("P6\n3 2\n255\n", pixels));
  const std::string message = user_error_message([&] { read_ppm(tmp / "short.ppm"); });
  EXPECT_NE(message.find("short.ppm"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;

  write_bytes(tmp / "ascii.ppm", std::string("P3\n1 1\n255\n1 2 3\n"));
  EXPECT_USER_ERROR_CONTAINS(read_ppm(tmp / "ascii.ppm"), "ascii.ppm");

  write_bytes(tmp / "deep.ppm", ppm("P6\n1 1\n65535\n", Bytes(6, 0)));
  EXPECT_USER_ERROR_CONTAINS(read_ppm(tmp / "deep.ppm"), "deep.ppm");

  write_bytes(tmp / "header.ppm", std::string("P6\n3 "));
  EXPECT_USER_ERROR_CONTAINS(read_ppm(tmp / "header.ppm"), "header.ppm");

  EXPECT_USER_ERROR_CONTAINS(read_ppm(tmp / "absent.ppm"), "absent.ppm");
}

TEST(ImageIo, ReadImageConvertsPpmToGrey) {
  TempDir tmp;
  write_bytes(tmp / "grey.ppm", ppm("P6\n2 1\n255\n", Bytes{255, 255, 255, 10, 200, 40}));
  const torch::Tensor grey = read_image(tmp / "grey.ppm", 1);
  ASSERT_EQ(grey.sizes(), (std::vector<int64_t>{1, 2, 1}));
  EXPECT_EQ(grey[0][0][0].item<int>(), 255);
  EXPECT_EQ(grey[0][1][0].item<int>(), (10 * 77 + 200 * 150 + 40 * 29) >> 8);
  expect_rgb_pattern(
      read_image((write_bytes(tmp / "c.ppm", ppm("P6 4 3 255 ", rgb_pattern(4, 3))), tmp / "c.ppm"),
                 3),
      4, 3);
}

TEST(ImageIo, ReadImageDecodesPngAndNamesCorruptFiles) {
  TempDir tmp;
  const Bytes pixels = rgb_pattern(4, 3);
  ASSERT_TRUE(stbi_write_png((tmp / "p.png").c_str(), 4, 3, 3, pixels.data(), 4 * 3));
  expect_rgb_pattern(read_image(tmp / "p.png", 3), 4, 3);
  EXPECT_EQ(read_image(tmp / "p.png", 1).sizes(), (std::vector<int64_t>{3, 4, 1}));
  write_bytes(tmp / "junk.png", std::string("\x89PNG not really"));
  EXPECT_USER_ERROR_CONTAINS(read_image(tmp / "junk.png", 3), "junk.png");
}

TEST(ImageIo, ResizeKeepsConstantColourAndReturnsSameTensorWhenSized) {
  const torch::Tensor image = torch::full({40, 35, 3}, 77, torch::kUInt8);
  const torch::Tensor small = resize_image(image, 32, 32);
  ASSERT_EQ(small.sizes(), (std::vector<int64_t>{32, 32, 3}));
  EXPECT_TRUE(torch::equal(small, torch::full({32, 32, 3}, 77, torch::kUInt8)));
  const torch::Tensor big = resize_image(torch::full({5, 4, 1}, 200, torch::kUInt8), 9, 11);
  ASSERT_EQ(big.sizes(), (std::vector<int64_t>{9, 11, 1}));
  EXPECT_TRUE(torch::equal(big, torch::full({9, 11, 1}, 200, torch::kUInt8)));
  EXPECT_TRUE(resize_image(image, 40, 35).is_same(image));
}

// ---- GTSRB ------------------------------------------------------------------------------

struct PpmSpec {
  std::string name;
  int width;
  int height;
  uint8_t red;  // every pixel is (red, 20, 30): a resize must keep it exactly
};

void write_solid_ppm(const fs::path& file, const PpmSpec& spec) {
  Bytes pixels;
  for (int i = 0; i < spec.width * spec.height; ++i) {
    pixels.insert(pixels.end(), {spec.red, 20, 30});
  }
  write_bytes(
      file, ppm("P6\n" + std::to_string(spec.width) + " " + std::to_string(spec.height) + "\n255\n",
                pixels));
}

// Class folders 00000 and 00002 (so folder index 1 holds ClassId 2), CSV sizes that lie.
void write_gtsrb(const fs::path& dir, bool test_csv_inside_images) {
  const std::vector<std::pair<std::string, std::vector<PpmSpec>>> classes = {
      {"00000", {{"00000_00000.ppm", 35, 40, 10}, {"00000_00001.ppm", 50, 48, 11}}},
      {"00002",
       {{"00000_00000.ppm", 31, 29, 20},
        {"00001_00000.ppm", 64, 33, 21},
        {"00001_00001.ppm", 32, 32, 22}}}};
  for (const auto& [name, images] : classes) {
    const fs::path folder = dir / "Final_Training" / "Images" / name;
    std::string csv = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\r\n";
    for (const PpmSpec& spec : images) {
      write_solid_ppm(folder / spec.name, spec);
      csv += spec.name + ";99;99;5;5;20;20;" + std::to_string(std::stoi(name)) + "\r\n";
    }
    write_bytes(folder / ("GT-" + name + ".csv"), csv);
  }
  const fs::path test_images = dir / "Final_Test" / "Images";
  const std::vector<std::pair<PpmSpec, int>> tests = {{{"00001.ppm", 40, 45, 31}, 0},
                                                      {{"00000.ppm", 36, 30, 30}, 2},
                                                      {{"00002.ppm", 33, 60, 32}, 2}};
  // Columns in another order than the training files: found by header name.
  std::string csv = "ClassId;Filename;Width;Height\n";
  for (const auto& [spec, class_id] : tests) {
    write_solid_ppm(test_images / spec.name, spec);
    csv += std::to_string(class_id) + ";" + spec.name + ";1;1\n";
  }
  write_bytes((test_csv_inside_images ? test_images : dir / "Final_Test") / "GT-final_test.csv",
              csv);
}

void expect_solid(const Dataset& data, const std::vector<int>& reds) {
  ASSERT_EQ(data.images.sizes(),
            (std::vector<int64_t>{static_cast<int64_t>(reds.size()), 32, 32, 3}));
  for (size_t i = 0; i < reds.size(); ++i) {
    torch::Tensor expected = torch::empty({32, 32, 3}, torch::kUInt8);
    expected.select(2, 0).fill_(reds[i]);
    expected.select(2, 1).fill_(20);
    expected.select(2, 2).fill_(30);
    EXPECT_TRUE(torch::equal(data.images[i], expected)) << "image " << i;
  }
}

TEST(GtsrbReader, ReadsOfficialLayout) {
  TempDir tmp;
  write_gtsrb(tmp.path(), /*test_csv_inside_images=*/false);
  const DatasetPair pair = read_gtsrb(tmp.path());
  EXPECT_EQ(pair.class_names, (std::vector<std::string>{"00000", "00002"}));
  EXPECT_FALSE(pair.natural_hflip);
  expect_solid(pair.train, {10, 11, 20, 21, 22});
  EXPECT_EQ(as_vector(pair.train.labels), (std::vector<int64_t>{0, 0, 1, 1, 1}));
  // Test images come in file name order: 00000 (ClassId 2), 00001 (0), 00002 (2).
  expect_solid(pair.test, {30, 31, 32});
  EXPECT_EQ(as_vector(pair.test.labels), (std::vector<int64_t>{1, 0, 1}));
}

TEST(GtsrbReader, FindsTestCsvInsideImages) {
  TempDir tmp;
  write_gtsrb(tmp.path(), /*test_csv_inside_images=*/true);
  const DatasetPair pair = read_gtsrb(tmp.path());
  EXPECT_EQ(as_vector(pair.test.labels), (std::vector<int64_t>{1, 0, 1}));
}

TEST(GtsrbReader, ReportsBrokenInput) {
  TempDir tmp;
  write_gtsrb(tmp.path(), false);
  fs::remove(tmp / "Final_Test" / "GT-final_test.csv");
  EXPECT_USER_ERROR_CONTAINS(read_gtsrb(tmp.path()), "GT-final_test.csv");

  write_gtsrb(tmp.path(), false);
  write_bytes(tmp / "Final_Training/Images/00002/00001_00000.ppm", std::string("P6\n64 33\n255\n"));
  EXPECT_USER_ERROR_CONTAINS(read_gtsrb(tmp.path()), "00002/00001_00000.ppm");

  write_gtsrb(tmp.path(), false);
  write_solid_ppm(tmp / "Final_Test/Images/00003.ppm", {"", 8, 8, 1});
  EXPECT_USER_ERROR_CONTAINS(read_gtsrb(tmp.path()), "00003.ppm");

  TempDir empty;
  EXPECT_USER_ERROR_CONTAINS(read_gtsrb(empty.path()), "Final_Training");
}

// ---- Image folders ----------------------------------------------------------------------

// A w x h RGB image whose pixels all derive from `seed`.
Bytes seeded_rgb(int width, int height, int seed) {
  Bytes out;
  for (int i = 0; i < width * height * 3; ++i)
    out.push_back(static_cast<uint8_t>(seed * 31 + i * 7));
  return out;
}

void write_png(const fs::path& file, int width, int height, int channels, const Bytes& pixels) {
  fs::create_directories(file.parent_path());
  ASSERT_TRUE(
      stbi_write_png(file.c_str(), width, height, channels, pixels.data(), width * channels));
}

// Classes created in the order zebra, apple, mango, files in reverse name order; seeds
// tell every image apart.
void write_image_folder(const fs::path& dir, int width = 5, int height = 3) {
  const std::vector<std::string> classes = {"zebra", "apple", "mango"};
  for (size_t k = 0; k < classes.size(); ++k) {
    for (const char* file : {"b.png", "a.png"}) {
      write_png(dir / "train" / classes[k] / file, width, height, 3,
                seeded_rgb(width, height, static_cast<int>(k * 10) + file[0]));
    }
    write_png(dir / "test" / classes[k] / "x.PNG", width, height, 3,
              seeded_rgb(width, height, static_cast<int>(k * 10) + 100));
  }
  write_bytes(dir / "train" / "apple" / "notes.txt", std::string("not an image"));
}

TEST(ImageFolderReader, SortsClassesAndFilesAndKeepsPixels) {
  TempDir tmp;
  write_image_folder(tmp.path());
  const DatasetPair pair = read_image_folder(tmp.path(), 0, "folder");
  EXPECT_EQ(pair.name, "folder");
  EXPECT_EQ(pair.class_names, (std::vector<std::string>{"apple", "mango", "zebra"}));
  EXPECT_EQ(as_vector(pair.train.labels), (std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(as_vector(pair.test.labels), (std::vector<int64_t>{0, 1, 2}));
  ASSERT_EQ(pair.train.images.sizes(), (std::vector<int64_t>{6, 3, 5, 3}));
  // Creation index of apple is 1, mango 2, zebra 0; a.png before b.png.
  const std::vector<int> train_seeds = {10 + 'a', 10 + 'b', 20 + 'a', 20 + 'b', 'a', 'b'};
  for (size_t i = 0; i < train_seeds.size(); ++i) {
    const Bytes expected = seeded_rgb(5, 3, train_seeds[i]);
    const torch::Tensor image = pair.train.images[i].contiguous();
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), image.data_ptr<uint8_t>()))
        << "image " << i;
  }
  const Bytes test_zebra = seeded_rgb(5, 3, 100);
  EXPECT_TRUE(std::equal(test_zebra.begin(), test_zebra.end(),
                         pair.test.images[2].contiguous().data_ptr<uint8_t>()));
}

TEST(ImageFolderReader, ResizesOnRequest) {
  TempDir tmp;
  write_image_folder(tmp.path());
  // A differently sized image is fine once everything is resized.
  write_png(tmp / "train" / "apple" / "c.png", 9, 7, 3, seeded_rgb(9, 7, 1));
  const DatasetPair pair = read_image_folder(tmp.path(), 8, "folder");
  EXPECT_EQ(pair.train.images.sizes(), (std::vector<int64_t>{7, 8, 8, 3}));
  EXPECT_EQ(pair.test.images.sizes(), (std::vector<int64_t>{3, 8, 8, 3}));
}

TEST(ImageFolderReader, NamesTheFirstMisfitAndCorruptFiles) {
  TempDir tmp;
  write_image_folder(tmp.path());
  write_png(tmp / "train" / "mango" / "c.png", 9, 7, 3, seeded_rgb(9, 7, 1));
  write_png(tmp / "train" / "zebra" / "c.png", 9, 7, 3, seeded_rgb(9, 7, 1));
  const std::string message =
      user_error_message([&] { read_image_folder(tmp.path(), 0, "folder"); });
  EXPECT_NE(message.find("mango/c.png"), std::string::npos) << message;
  EXPECT_NE(message.find("--image-size"), std::string::npos) << message;

  TempDir corrupt;
  write_image_folder(corrupt.path());
  write_bytes(corrupt / "test/mango/broken.png", std::string("\x89PNG\r\n\x1a\n garbage"));
  EXPECT_USER_ERROR_CONTAINS(read_image_folder(corrupt.path(), 0, "folder"), "broken.png");
}

TEST(ImageFolderReader, RejectsMismatchedOrEmptyClasses) {
  TempDir tmp;
  write_image_folder(tmp.path());
  fs::create_directories(tmp / "test" / "kiwi");
  EXPECT_USER_ERROR_CONTAINS(read_image_folder(tmp.path(), 0, "folder"), "kiwi");
  fs::remove(tmp / "test" / "kiwi");
  fs::create_directories(tmp / "train" / "kiwi");
  fs::create_directories(tmp / "test" / "kiwi");
  EXPECT_USER_ERROR_CONTAINS(read_image_folder(tmp.path(), 0, "folder"), "kiwi");

  TempDir no_classes;
  fs::create_directories(no_classes / "train");
  fs::create_directories(no_classes / "test");
  EXPECT_USER_ERROR_CONTAINS(read_image_folder(no_classes.path(), 0, "folder"), "train");
}

TEST(ImageFolderReader, KeepsGreyImagesSingleChannel) {
  TempDir tmp;
  for (const char* split : {"train", "test"}) {
    for (const char* name : {"one", "two"}) {
      write_png(tmp / split / name / "0.png", 4, 2, 1, Bytes{1, 2, 3, 4, 5, 6, 7, 8});
    }
  }
  const DatasetPair pair = read_image_folder(tmp.path(), 0, "folder");
  ASSERT_EQ(pair.train.images.sizes(), (std::vector<int64_t>{2, 2, 4, 1}));
  EXPECT_EQ(pair.train.images[1][1][3][0].item<int>(), 8);
}

TEST(ImageFolderReader, DecodesManyImagesInOrder) {
  TempDir tmp;
  for (const char* split : {"train", "test"}) {
    for (int i = 0; i < 300; ++i) {
      char name[16];
      std::snprintf(name, sizeof(name), "%04d.png", i);
      write_png(tmp / split / (i % 2 ? "odd" : "even") / name, 2, 2, 3, seeded_rgb(2, 2, i));
    }
  }
  const DatasetPair pair = read_image_folder(tmp.path(), 0, "folder");
  ASSERT_EQ(pair.train.size(), 300);
  for (int64_t j = 0; j < 300; ++j) {
    // even images first (0, 2, 4, ...), then odd ones.
    const int i = j < 150 ? static_cast<int>(2 * j) : static_cast<int>(2 * (j - 150) + 1);
    const Bytes expected = seeded_rgb(2, 2, i);
    ASSERT_TRUE(std::equal(expected.begin(), expected.end(),
                           pair.train.images[j].contiguous().data_ptr<uint8_t>()))
        << "image " << j;
  }

  // With several bad files the one that comes first in dataset order is reported, whichever
  // thread reaches its file first: train/even/0200.png is image 100, odd/0001.png image 150.
  write_bytes(tmp / "train/odd/0001.png", std::string("not a png"));
  write_bytes(tmp / "train/even/0200.png", std::string("not a png"));
  for (int repeat = 0; repeat < 3; ++repeat) {
    EXPECT_USER_ERROR_CONTAINS(read_image_folder(tmp.path(), 0, "folder"), "even/0200.png");
  }
}

// ---- Dataset and load_dataset -----------------------------------------------------------

TEST(Dataset, SelectCopiesRows) {
  Dataset data;
  data.images = torch::arange(4 * 2 * 2, torch::kUInt8).view({4, 2, 2, 1});
  data.labels = torch::tensor({5, 6, 7, 8}, torch::kInt64);
  const Dataset picked = data.select(torch::tensor({3, 1}, torch::kInt64));
  ASSERT_EQ(picked.size(), 2);
  EXPECT_EQ(as_vector(picked.labels), (std::vector<int64_t>{8, 6}));
  EXPECT_TRUE(torch::equal(picked.images[0], data.images[3]));
  picked.images.fill_(0);
  EXPECT_EQ(data.images[3][1][1][0].item<int>(), 15);
}

TEST(LoadDataset, RejectsUnknownNamesAndMissingDirectories) {
  EXPECT_EQ(dataset_names(),
            (std::vector<std::string>{"mnist", "fashion-mnist", "cifar10", "cifar100", "gtsrb",
                                      "tiny-imagenet", "folder"}));
  const std::string message = user_error_message([] { load_dataset({"imagenet21k", "/tmp"}); });
  EXPECT_NE(message.find("'imagenet21k'"), std::string::npos) << message;
  for (const std::string& name : dataset_names()) {
    EXPECT_NE(message.find(name), std::string::npos) << message;
  }
  EXPECT_USER_ERROR_CONTAINS(load_dataset({"cifar10", ""}), "--data-dir");
  EXPECT_USER_ERROR_CONTAINS(load_dataset({"mnist", ""}), "--data-dir");
  TempDir tmp;
  EXPECT_USER_ERROR_CONTAINS(load_dataset({"gtsrb", (tmp / "nowhere").string()}), "nowhere");
}

TEST(LoadDataset, PicksCifarBinaryOrFolderLayout) {
  TempDir binary;
  write_cifar_binary(binary / "cifar-10-batches-bin");
  const DatasetPair from_binary = load_dataset({"cifar10", binary.path().string()});
  EXPECT_EQ(from_binary.name, "cifar10");
  EXPECT_TRUE(from_binary.natural_hflip);
  EXPECT_EQ(from_binary.train.size(), 6);
  expect_cifar_pixels(from_binary.test, 6);

  TempDir folder;
  const std::vector<std::string> classes = {"airplane", "automobile", "bird",  "cat",  "deer",
                                            "dog",      "frog",       "horse", "ship", "truck"};
  for (size_t k = 0; k < classes.size(); ++k) {
    write_png(folder / "train" / classes[k] / "0.png", 32, 32, 3, seeded_rgb(32, 32, k));
    write_png(folder / "test" / classes[k] / "0.png", 32, 32, 3, seeded_rgb(32, 32, k + 50));
  }
  const DatasetPair from_folder = load_dataset({"cifar10", folder.path().string(), 16});
  EXPECT_EQ(from_folder.name, "cifar10");
  EXPECT_EQ(from_folder.class_names, classes);
  // No resize for cifar10, whatever image_size says.
  EXPECT_EQ(from_folder.train.images.sizes(), (std::vector<int64_t>{10, 32, 32, 3}));
  EXPECT_EQ(as_vector(from_folder.test.labels),
            (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));

  TempDir neither;
  fs::create_directories(neither / "train");
  const std::string message = user_error_message([&] {
    load_dataset({"cifar10", neither.path().string()});
  });
  EXPECT_NE(message.find("data_batch_1.bin"), std::string::npos) << message;
  EXPECT_NE(message.find("train/"), std::string::npos) << message;
}

TEST(LoadDataset, DispatchesOtherFormats) {
  TempDir mnist;
  write_mnist_folder(mnist.path(), /*gzip=*/true);
  const DatasetPair digits = load_dataset({"mnist", mnist.path().string()});
  EXPECT_FALSE(digits.natural_hflip);
  expect_idx_pixels(digits.train, 3, 2, 4);
  const DatasetPair clothes = load_dataset({"fashion-mnist", mnist.path().string()});
  EXPECT_TRUE(clothes.natural_hflip);
  EXPECT_EQ(clothes.class_names[5], "Sandal");

  TempDir gtsrb;
  write_gtsrb(gtsrb.path(), false);
  const DatasetPair signs = load_dataset({"gtsrb", gtsrb.path().string()});
  EXPECT_EQ(signs.name, "gtsrb");
  EXPECT_FALSE(signs.natural_hflip);
  EXPECT_EQ(signs.train.size(), 5);

  TempDir folder;
  write_image_folder(folder.path());
  const DatasetPair custom = load_dataset({"folder", folder.path().string(), 4});
  EXPECT_TRUE(custom.natural_hflip);
  EXPECT_EQ(custom.train.images.sizes(), (std::vector<int64_t>{6, 4, 4, 3}));
}

}  // namespace
}  // namespace nad::data
