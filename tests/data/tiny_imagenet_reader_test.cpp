// The Tiny-ImageNet reader on fixtures written in the official layout: wnids.txt, words.txt,
// train/<wnid>/images/*.JPEG and val/images/ labelled by val/val_annotations.txt. Most images
// are PNG files named .JPEG (the reader goes by content), so that pixels can be compared
// exactly.
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

// An RGB image whose pixels all derive from `seed`.
Bytes seeded_rgb(int seed, int width = 64, int height = 64) {
  Bytes out;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) out.push_back(static_cast<uint8_t>(seed * 29 + y * 5 + x * 3 + c * 71));
    }
  }
  return out;
}

void write_png(const fs::path& file, const Bytes& pixels, int width = 64, int height = 64,
               int channels = 3) {
  fs::create_directories(file.parent_path());
  ASSERT_TRUE(
      stbi_write_png(file.c_str(), width, height, channels, pixels.data(), width * channels));
}

// wnids.txt's order, not sorted, decides the labels.
const std::vector<std::string> kWnids = {"n02124075", "n01443537", "n04067472"};
// val_<i>.JPEG is of class kValClasses[i].
const std::vector<int> kValClasses = {2, 0, 1, 0};

int train_seed(int k, int i) { return k * 10 + i; }
int val_seed(int i) { return 100 + i; }

// Two training images a class (written in reverse name order) and four validation images, with
// CRLF line ends and trailing blank lines as a Windows-unpacked copy might have.
void write_tiny_imagenet(const fs::path& dir) {
  std::string wnids;
  for (const std::string& wnid : kWnids) wnids += wnid + "\n";
  write_bytes(dir / "wnids.txt", wnids + "\n");
  write_bytes(dir / "words.txt", std::string("n00001740\tentity\n"
                                             "n01443537\tgoldfish, Carassius auratus\n"
                                             "n02124075\tEgyptian cat\n"));
  for (size_t k = 0; k < kWnids.size(); ++k) {
    const fs::path folder = dir / "train" / kWnids[k];
    for (int i = 1; i >= 0; --i) {
      write_png(folder / "images" / (kWnids[k] + "_" + std::to_string(i) + ".JPEG"),
                seeded_rgb(train_seed(static_cast<int>(k), i)));
    }
    write_bytes(folder / (kWnids[k] + "_boxes.txt"),
                kWnids[k] + "_0.JPEG\t0\t0\t63\t63\n" + kWnids[k] + "_1.JPEG\t1\t2\t60\t61\n");
  }
  std::string annotations;
  for (size_t i = 0; i < kValClasses.size(); ++i) {
    const std::string name = "val_" + std::to_string(i) + ".JPEG";
    write_png(dir / "val" / "images" / name, seeded_rgb(val_seed(static_cast<int>(i))));
    annotations += name + "\t" + kWnids[kValClasses[i]] + "\t0\t3\t44\t62\r\n";
  }
  write_bytes(dir / "val" / "val_annotations.txt", annotations + "\r\n");
}

std::vector<int64_t> as_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void expect_image(const torch::Tensor& image, int seed) {
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{64, 64, 3}));
  const Bytes expected = seeded_rgb(seed);
  const torch::Tensor contiguous = image.contiguous();
  EXPECT_EQ(Bytes(contiguous.data_ptr<uint8_t>(), contiguous.data_ptr<uint8_t>() + 64 * 64 * 3),
            expected)
      << "image of seed " << seed;
}

TEST(TinyImagenetReader, ReadsTheOfficialLayout) {
  TempDir tmp;
  write_tiny_imagenet(tmp.path());
  const DatasetPair pair = read_tiny_imagenet(tmp.path());
  EXPECT_EQ(pair.name, "tiny-imagenet");
  EXPECT_TRUE(pair.natural_hflip);
  // words.txt names two of the wnids; the third keeps its wnid.
  EXPECT_EQ(pair.class_names, (std::vector<std::string>{"Egyptian cat", "goldfish, Carassius auratus",
                                                        "n04067472"}));
  ASSERT_EQ(pair.train.images.sizes(), (std::vector<int64_t>{6, 64, 64, 3}));
  EXPECT_EQ(as_vector(pair.train.labels), (std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
  // Files sorted by name within a class: _0 before _1.
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 2; ++i) expect_image(pair.train.images[2 * k + i], train_seed(k, i));
  }
  // The val split, in val_annotations.txt's order, is the test split.
  ASSERT_EQ(pair.test.images.sizes(), (std::vector<int64_t>{4, 64, 64, 3}));
  EXPECT_EQ(as_vector(pair.test.labels), (std::vector<int64_t>{2, 0, 1, 0}));
  for (int i = 0; i < 4; ++i) expect_image(pair.test.images[i], val_seed(i));
}

TEST(TinyImagenetReader, ParsesValAnnotationsFromText) {
  const std::vector<TinyImagenetAnnotation> rows = parse_tiny_imagenet_val_annotations(
      "val_0.JPEG\tn03444034\t0\t32\t44\t62\n\n  \nval_1.JPEG\tn04067472\t52\t55\t57\t59\r\n"
      "val_2.JPEG\tn04070727\t4\t0\t60\t55",
      "val_annotations.txt");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].filename, "val_0.JPEG");
  EXPECT_EQ(rows[0].wnid, "n03444034");
  EXPECT_EQ(rows[0].line, 1u);
  EXPECT_EQ(rows[1].filename, "val_1.JPEG");
  EXPECT_EQ(rows[1].wnid, "n04067472");
  EXPECT_EQ(rows[1].line, 4u);
  EXPECT_EQ(rows[2].wnid, "n04070727");
  EXPECT_EQ(rows[2].line, 5u);
  EXPECT_TRUE(parse_tiny_imagenet_val_annotations("", "v.txt").empty());
}

TEST(TinyImagenetReader, FindsTheReleaseFolderAndDecodesJpegAndGrey) {
  TempDir tmp;
  const fs::path root = tmp / "tiny-imagenet-200";
  write_tiny_imagenet(root);
  fs::remove(root / "words.txt");
  // A real JPEG of one flat colour, and a greyscale image as a few official files are.
  const fs::path jpeg = root / "train" / kWnids[1] / "images" / (kWnids[1] + "_0.JPEG");
  const Bytes flat = [] {
    Bytes out;
    for (int i = 0; i < 64 * 64; ++i) out.insert(out.end(), {200, 40, 90});
    return out;
  }();
  ASSERT_TRUE(stbi_write_jpg(jpeg.c_str(), 64, 64, 3, flat.data(), 95));
  write_png(root / "val" / "images" / "val_3.JPEG", Bytes(64 * 64, 77), 64, 64, 1);

  const DatasetPair pair = load_dataset({"tiny-imagenet", tmp.path().string()});
  EXPECT_EQ(pair.name, "tiny-imagenet");
  EXPECT_TRUE(pair.natural_hflip);
  EXPECT_EQ(pair.class_names, kWnids);  // no words.txt
  ASSERT_EQ(pair.train.size(), 6);
  const torch::Tensor decoded = pair.train.images[2].to(torch::kInt);
  EXPECT_EQ(decoded.sizes(), (std::vector<int64_t>{64, 64, 3}));
  const torch::Tensor colour = torch::tensor({200, 40, 90}, torch::kInt);
  EXPECT_LE((decoded - colour).abs().max().item<int>(), 3);  // lossy, but nearly flat
  expect_image(pair.train.images[3], train_seed(1, 1));
  EXPECT_TRUE(torch::equal(pair.test.images[3], torch::full({64, 64, 3}, 77, torch::kUInt8)));
  EXPECT_EQ(as_vector(pair.test.labels), (std::vector<int64_t>{2, 0, 1, 0}));
}

TEST(TinyImagenetReader, RejectsMalformedValAnnotations) {
  TempDir tmp;
  write_tiny_imagenet(tmp.path());
  const fs::path file = tmp / "val" / "val_annotations.txt";
  const std::string good = "val_0.JPEG\tn04067472\t0\t3\t44\t62\n";
  const auto expect_rejected = [&](const std::string& second_line,
                                   const std::vector<std::string>& parts) {
    write_bytes(file, good + second_line + "\n");
    std::vector<std::string> all = {file.string() + "' line 2"};
    all.insert(all.end(), parts.begin(), parts.end());
    expect_user_error([&] { read_tiny_imagenet(tmp.path()); }, all);
  };
  expect_rejected("val_1.JPEG\tn01443537\t0\t3\t44",
                  {"has 5 tab-separated fields, expected 6"});
  expect_rejected("val_1.JPEG n01443537 0 3 44 62", {"has 1 tab-separated fields"});
  expect_rejected("val_1.JPEG\tn01443537\t0\t3\t44\t62\t7", {"has 7 tab-separated fields"});
  expect_rejected("../val_1.JPEG\tn01443537\t0\t3\t44\t62",
                  {"file name '../val_1.JPEG'", "plain file name"});
  expect_rejected("..\tn01443537\t0\t3\t44\t62", {"file name '..'"});
  expect_rejected("images\\val_1.JPEG\tn01443537\t0\t3\t44\t62", {"plain file name"});
  expect_rejected("\tn01443537\t0\t3\t44\t62", {"file name ''"});
  expect_rejected("val_1.JPEG\tn01443537\t0\t3x\t44\t62",
                  {"bounding box value '3x' (field 4)", "not a whole number"});
  expect_rejected("val_1.JPEG\tn01443537\t0\t-3\t44\t62", {"bounding box value '-3'"});
  expect_rejected("val_1.JPEG\t\t0\t3\t44\t62", {"bad wnid ''"});
  expect_rejected("val_1.JPEG\tn09999999\t0\t3\t44\t62",
                  {"wnid 'n09999999' is not in", "wnids.txt"});
  expect_rejected("val_0.JPEG\tn01443537\t0\t3\t44\t62", {"'val_0.JPEG' is listed twice (first on line 1)"});
  expect_rejected("val_9.JPEG\tn01443537\t0\t3\t44\t62",
                  {"lists 'val_9.JPEG'", (tmp / "val" / "images" / "val_9.JPEG").string(),
                   "does not exist"});

  // An image of another size is named with the line that lists it; never resized.
  write_bytes(file, good + "val_1.JPEG\tn01443537\t0\t3\t44\t62\n");
  const fs::path small = tmp / "val" / "images" / "val_1.JPEG";
  write_png(small, seeded_rgb(1, 32, 32), 32, 32);
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {"'" + small.string() + "' ('" + file.string() + "' line 2) is 32x32",
                     "images are 64x64"});

  write_bytes(file, std::string("\n\n"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); }, {file.string(), "lists no images"});
  fs::remove(file);
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {"missing Tiny-ImageNet test labels", file.string()});
}

TEST(TinyImagenetReader, RejectsMalformedClassListsAndImages) {
  TempDir tmp;
  write_tiny_imagenet(tmp.path());
  const fs::path wnids = tmp / "wnids.txt";

  write_bytes(wnids, std::string("n02124075\nn01443537\nn02124075\n"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {wnids.string() + "' line 3", "'n02124075' is listed twice (first on line 1)"});
  write_bytes(wnids, std::string("n02124075\n../n01443537\n"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {wnids.string() + "' line 2", "'../n01443537' is not a wnid"});
  write_bytes(wnids, std::string("n02124075 n01443537\n"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); }, {wnids.string() + "' line 1"});
  write_bytes(wnids, std::string("\nn02124075\n"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {wnids.string(), "lists 1 wnids", "at least 2 classes"});
  // A listed class without its training folder names the folder and the line.
  write_bytes(wnids, std::string("n02124075\nn01443537\nn04067472\nn07000000\n"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {(tmp / "train" / "n07000000" / "images").string(), wnids.string() + "' line 4"});
  fs::create_directories(tmp / "train" / "n07000000" / "images");
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {(tmp / "train" / "n07000000" / "images").string(), "has no images"});
  write_bytes(wnids, std::string("n02124075\nn01443537\nn04067472\n"));

  const fs::path words = tmp / "words.txt";
  write_bytes(words, std::string("n00001740\tentity\nn01443537 goldfish\n"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {words.string() + "' line 2", "a wnid, a tab, then its names"});
  fs::remove(words);

  const fs::path wide = tmp / "train" / kWnids[2] / "images" / (kWnids[2] + "_1.JPEG");
  write_png(wide, seeded_rgb(1, 65, 64), 65, 64);
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); },
                    {"'" + wide.string() + "' is 65x64", "images are 64x64"});
  write_bytes(wide, std::string("not an image"));
  expect_user_error([&] { read_tiny_imagenet(tmp.path()); }, {wide.string()});

  TempDir empty;
  expect_user_error([&] { read_tiny_imagenet(empty.path()); },
                    {"not a Tiny-ImageNet folder", "wnids.txt", "tiny-imagenet-200/"});
}

}  // namespace
}  // namespace nad::data
