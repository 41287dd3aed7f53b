// The CIFAR-100 reader on fixtures written in the official binary layout (train.bin, test.bin,
// fine_label_names.txt, coarse_label_names.txt) and in the image-folder layout.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nad/data/dataset.h"
#include "nad/data/readers.h"
#include "support/temp_dir.h"
#include "support/user_error.h"

namespace nad::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using nad::test::expect_user_error;
using nad::test::TempDir;
using nad::test::write_bytes;

struct Record {
  int coarse = 0;
  int fine = 0;
};

uint8_t pixel(int record, int channel, int y, int x) {
  return static_cast<uint8_t>(record * 53 + channel * 101 + y * 7 + x * 3);
}

// Records numbered from `first_record` (their pixels derive from the number), planes in R, G,
// B order as in the official files.
Bytes records(int first_record, const std::vector<Record>& labels) {
  Bytes out;
  for (size_t i = 0; i < labels.size(); ++i) {
    out.push_back(static_cast<uint8_t>(labels[i].coarse));
    out.push_back(static_cast<uint8_t>(labels[i].fine));
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) out.push_back(pixel(first_record + i, c, y, x));
      }
    }
  }
  return out;
}

const std::vector<Record> kTrain = {{4, 30}, {19, 99}, {0, 0}};
const std::vector<Record> kTest = {{13, 58}, {7, 1}};

// train.bin holds records 0-2, test.bin records 3-4.
void write_cifar100(const fs::path& dir) {
  write_bytes(dir / "train.bin", records(0, kTrain));
  write_bytes(dir / "test.bin", records(3, kTest));
}

std::string numbered_names(const std::string& prefix, int count, const std::string& newline) {
  std::string text;
  for (int k = 0; k < count; ++k) text += prefix + std::to_string(k) + newline;
  return text;
}

std::vector<int64_t> as_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void expect_pixels(const Dataset& data, int first_record) {
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{data.size(), 32, 32, 3}));
  ASSERT_TRUE(data.images.is_contiguous());
  auto pixels = data.images.accessor<uint8_t, 4>();
  for (int64_t i = 0; i < data.size(); ++i) {
    for (int y = 0; y < 32; ++y) {
      for (int x = 0; x < 32; ++x) {
        for (int c = 0; c < 3; ++c) {
          ASSERT_EQ(pixels[i][y][x][c], pixel(first_record + i, c, y, x))
              << "image " << i << " y " << y << " x " << x << " c " << c;
        }
      }
    }
  }
}

TEST(Cifar100Reader, ReadsHwcPixelsWithFineOrCoarseLabels) {
  TempDir tmp;
  write_cifar100(tmp.path());

  const DatasetPair fine = read_cifar100_binary(tmp.path(), /*coarse=*/false);
  EXPECT_EQ(fine.name, "cifar100");
  EXPECT_TRUE(fine.natural_hflip);
  ASSERT_EQ(fine.train.size(), 3);
  ASSERT_EQ(fine.test.size(), 2);
  expect_pixels(fine.train, 0);
  expect_pixels(fine.test, 3);
  EXPECT_EQ(as_vector(fine.train.labels), (std::vector<int64_t>{30, 99, 0}));
  EXPECT_EQ(as_vector(fine.test.labels), (std::vector<int64_t>{58, 1}));
  // No names file: the class numbers.
  ASSERT_EQ(fine.num_classes(), 100);
  EXPECT_EQ(fine.class_names[0], "0");
  EXPECT_EQ(fine.class_names[99], "99");

  const DatasetPair coarse = read_cifar100_binary(tmp.path(), /*coarse=*/true);
  expect_pixels(coarse.train, 0);
  expect_pixels(coarse.test, 3);
  EXPECT_EQ(as_vector(coarse.train.labels), (std::vector<int64_t>{4, 19, 0}));
  EXPECT_EQ(as_vector(coarse.test.labels), (std::vector<int64_t>{13, 7}));
  ASSERT_EQ(coarse.num_classes(), 20);
  EXPECT_EQ(coarse.class_names[19], "19");
}

TEST(Cifar100Reader, ParsesRecordsFromMemory) {
  const Bytes bytes = records(3, kTest);
  const Cifar100Batch batch = parse_cifar100_records(bytes.data(), bytes.size(), "mem.bin");
  EXPECT_EQ(as_vector(batch.fine_labels), (std::vector<int64_t>{58, 1}));
  EXPECT_EQ(as_vector(batch.coarse_labels), (std::vector<int64_t>{13, 7}));
  expect_pixels({batch.images, batch.fine_labels}, 3);
  expect_user_error([] { parse_cifar100_records(nullptr, 0, "mem.bin"); },
                    {"'mem.bin'", "size 0", "3074-byte record"});
}

TEST(Cifar100Reader, FindsTheReleaseFolderAndItsClassNames) {
  TempDir tmp;
  const fs::path release = tmp / "cifar-100-binary";
  write_cifar100(release);
  // As in the release: one name per line, blank lines at the end (here with CRLF).
  write_bytes(release / "fine_label_names.txt", numbered_names("fine_", 100, "\r\n") + "\r\n\r\n");
  write_bytes(release / "coarse_label_names.txt", numbered_names("coarse_", 20, "\n") + "\n");

  const DatasetPair fine = load_dataset({"cifar100", tmp.path().string()});
  EXPECT_EQ(fine.name, "cifar100");
  EXPECT_TRUE(fine.natural_hflip);
  ASSERT_EQ(fine.num_classes(), 100);
  EXPECT_EQ(fine.class_names[0], "fine_0");
  EXPECT_EQ(fine.class_names[99], "fine_99");
  EXPECT_EQ(as_vector(fine.train.labels), (std::vector<int64_t>{30, 99, 0}));
  expect_pixels(fine.test, 3);

  const DatasetPair coarse = load_dataset({"cifar100", tmp.path().string(), 0, "coarse"});
  ASSERT_EQ(coarse.num_classes(), 20);
  EXPECT_EQ(coarse.class_names[4], "coarse_4");
  EXPECT_EQ(as_vector(coarse.test.labels), (std::vector<int64_t>{13, 7}));

  expect_user_error(
      [&] {
        load_dataset({"cifar100", tmp.path().string(), 0, "medium"});
      },
      {"--cifar100-labels", "'medium'"});
}

TEST(Cifar100Reader, RejectsMalformedFiles) {
  TempDir tmp;
  write_cifar100(tmp.path());
  const fs::path train = tmp / "train.bin";
  const fs::path test = tmp / "test.bin";

  Bytes truncated = records(0, kTrain);
  truncated.pop_back();
  write_bytes(train, truncated);
  expect_user_error([&] { read_cifar100_binary(tmp.path(), false); },
                    {train.string(), "size 9221", "3074-byte record", "truncated"});
  // A CIFAR-10 batch is 3073 bytes a record: not a multiple of 3074 either.
  write_bytes(train, Bytes(3073 * 2, 0));
  expect_user_error([&] { read_cifar100_binary(tmp.path(), false); }, {train.string(), "6146"});
  write_bytes(train, records(0, kTrain));

  // Both label bytes are checked, whichever labels were asked for.
  write_bytes(train, records(0, {{4, 30}, {20, 5}}));
  expect_user_error([&] { read_cifar100_binary(tmp.path(), false); },
                    {train.string(), "record 1 (byte offset 3074)", "coarse label 20", "0-19"});
  write_bytes(train, records(0, kTrain));
  write_bytes(test, records(3, {{1, 100}}));
  expect_user_error([&] { read_cifar100_binary(tmp.path(), true); },
                    {test.string(), "record 0 (byte offset 0)", "fine label 100", "0-99"});

  fs::remove(test);
  expect_user_error([&] { read_cifar100_binary(tmp.path(), false); },
                    {"missing CIFAR-100 file", test.string()});
  write_bytes(test, records(3, kTest));

  const fs::path names = tmp / "fine_label_names.txt";
  write_bytes(names, numbered_names("n", 99, "\n"));
  expect_user_error([&] { read_cifar100_binary(tmp.path(), false); },
                    {names.string(), "has 99 class names, expected 100"});
  write_bytes(names, numbered_names("n", 101, "\n"));
  expect_user_error([&] { read_cifar100_binary(tmp.path(), false); },
                    {names.string(), "line 101", "more than 100"});
  write_bytes(names, "a\n\n" + numbered_names("n", 99, "\n"));
  expect_user_error([&] { read_cifar100_binary(tmp.path(), false); },
                    {names.string(), "line 2: empty class name"});
  // The coarse names file is only read for coarse labels.
  write_bytes(names, numbered_names("n", 100, "\n"));
  write_bytes(tmp / "coarse_label_names.txt", numbered_names("c", 3, "\n"));
  EXPECT_EQ(read_cifar100_binary(tmp.path(), false).class_names[7], "n7");
  expect_user_error([&] { read_cifar100_binary(tmp.path(), true); },
                    {"coarse_label_names.txt", "has 3 class names, expected 20"});
}

void write_png(const fs::path& file, uint8_t value) {
  fs::create_directories(file.parent_path());
  const Bytes pixels(4 * 4 * 3, value);
  ASSERT_TRUE(stbi_write_png(file.c_str(), 4, 4, 3, pixels.data(), 4 * 3));
}

TEST(Cifar100Reader, ReadsTheImageFolderLayoutWithFineLabelsOnly) {
  TempDir tmp;
  // Folder names sort as c000 ... c099, so folder k is class k.
  const auto folder = [](int k) {
    return "c0" + std::string(k < 10 ? "0" : "") + std::to_string(k);
  };
  for (int k = 0; k < 100; ++k) {
    write_png(tmp / "train" / folder(k) / "0.png", static_cast<uint8_t>(k));
    write_png(tmp / "test" / folder(k) / "0.png", static_cast<uint8_t>(k + 100));
  }
  const DatasetPair pair = load_dataset({"cifar100", tmp.path().string()});
  ASSERT_EQ(pair.num_classes(), 100);
  EXPECT_EQ(pair.class_names[42], "c042");
  ASSERT_EQ(pair.train.size(), 100);
  EXPECT_EQ(pair.train.labels[42].item<int64_t>(), 42);
  EXPECT_EQ(pair.train.images[42][3][3][2].item<int>(), 42);
  EXPECT_EQ(pair.test.labels[99].item<int64_t>(), 99);
  EXPECT_EQ(pair.test.images[99][0][0][0].item<int>(), 199);

  expect_user_error(
      [&] {
        load_dataset({"cifar100", tmp.path().string(), 0, "coarse"});
      },
      {tmp.path().string(), "no superclasses", "train.bin"});

  TempDir few;
  for (int k = 0; k < 3; ++k) {
    write_png(few / "train" / folder(k) / "0.png", 1);
    write_png(few / "test" / folder(k) / "0.png", 1);
  }
  expect_user_error(
      [&] {
        load_dataset({"cifar100", few.path().string()});
      },
      {(few / "train").string(), "has 3 class folders but CIFAR-100 has 100"});

  TempDir neither;
  expect_user_error(
      [&] {
        load_dataset({"cifar100", neither.path().string()});
      },
      {"not a CIFAR-100 folder", "train.bin", "cifar-100-binary/", "train/<class>"});
}

}  // namespace
}  // namespace nad::data
