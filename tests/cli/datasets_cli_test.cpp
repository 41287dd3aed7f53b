// The real nad binary on a generated folder in Tiny-ImageNet's official layout: a backdoor is
// learnt at 64 x 64, then NAD erases it.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

// `classes` (up to 10) wnids, each a dark colour under per-pixel noise, crossed by three bright
// bars at random places that say nothing about the class; JPEG files, as in the release.
void write_tiny_imagenet(const fs::path& dir, int classes, int train_per_class, int val_per_class,
                         uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto random = [&](int64_t low, int64_t high) {
    return torch::randint(low, high, {1}, gen).item<int64_t>();
  };
  // The corners of a dark colour cube, then its centre and an orange: at least 40 apart.
  static const int kColours[10][3] = {{10, 10, 10}, {90, 10, 10}, {10, 90, 10}, {90, 90, 10},
                                      {10, 10, 90}, {90, 10, 90}, {10, 90, 90}, {90, 90, 90},
                                      {50, 50, 50}, {90, 50, 10}};
  const auto image = [&](int k) {
    const torch::Tensor colour =
        torch::tensor({kColours[k][0], kColours[k][1], kColours[k][2]}, torch::kInt);
    torch::Tensor pixels = torch::randint(-10, 11, {64, 64, 3}, gen, torch::kInt) + colour;
    for (int bar = 0; bar < 3; ++bar) {
      const int64_t value = random(120, 256), at = random(0, 63);
      pixels.narrow(random(0, 2), at, 2).fill_(value);  // two rows or two columns
    }
    return pixels.clamp(0, 255).to(torch::kUInt8).contiguous();
  };
  const auto write_jpeg = [](const fs::path& file, const torch::Tensor& pixels) {
    fs::create_directories(file.parent_path());
    ASSERT_TRUE(stbi_write_jpg(file.c_str(), 64, 64, 3, pixels.data_ptr<uint8_t>(), 90));
  };
  std::string wnids, annotations;
  int val_index = 0;
  for (int k = 0; k < classes; ++k) {
    const std::string wnid = "n0" + std::to_string(1000000 + k);
    wnids += wnid + "\n";
    for (int i = 0; i < train_per_class; ++i) {
      write_jpeg(dir / "train" / wnid / "images" / (wnid + "_" + std::to_string(i) + ".JPEG"),
                 image(k));
    }
    for (int i = 0; i < val_per_class; ++i, ++val_index) {
      const std::string name = "val_" + std::to_string(val_index) + ".JPEG";
      write_jpeg(dir / "val" / "images" / name, image(k));
      annotations += name + "\t" + wnid + "\t0\t0\t63\t63\n";
    }
  }
  write_bytes(dir / "wnids.txt", wnids);
  write_bytes(dir / "val" / "val_annotations.txt", annotations);
}

TEST(DatasetsCli, TinyImagenetBackdoorIsLearntThenErasedByNad) {
  TempDir dir;
  write_tiny_imagenet(dir / "tiny", 10, 30, 10, 7);
  const std::string data = " --dataset tiny-imagenet --data-dir " + (dir / "tiny").string();
  // Blend rather than BadNets: its trigger spans the image, so finetuning on clean images
  // reaches the units it drives. A 3 x 3 BadNets patch is 0.2% of a 64 x 64 image: mnist-cnn
  // learns it here (ASR 100%) in units clean images hardly use, and NAD on 60 clean images
  // either leaves it (ASR 70-100%) or, at a larger rate, wrecks the model (accuracy 20-40%).
  const std::string attack = " --attack blend --alpha 0.3 --target 0 --poison-rate 0.3";

  // No flips or crops, and small batches: learnt in ten epochs of 300 images.
  CommandResult trained =
      run_nad("train" + data + attack +
              " --arch mnist-cnn --epochs 10 --batch-size 16 --lr 0.03 --flip false "
              "--crop-padding 0 --seed 1 --quiet --out " +
              (dir / "bd").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const nlohmann::json bd = read_json(dir / "bd" / "summary.json");
  EXPECT_EQ(bd["dataset"], "tiny-imagenet");
  EXPECT_GT(bd["clean_acc"].get<double>(), 85.0) << read_text(dir / "bd" / "metrics.csv");
  EXPECT_GT(bd["asr"].get<double>(), 90.0) << read_text(dir / "bd" / "metrics.csv");
  EXPECT_EQ(count_lines(dir / "bd" / "poisoned_indices.txt"), 90);  // 30% of 300
  const nlohmann::json config = read_json(dir / "bd" / "config.json");
  EXPECT_EQ(config["common"]["dataset"], "tiny-imagenet");
  EXPECT_FALSE(config["common"].contains("cifar100_labels"));

  // A fixed rate instead of the --lr auto search keeps the test short.
  CommandResult erased =
      run_nad("erase" + data + attack + " --model " + (dir / "bd" / "model.pt").string() +
              " --clean-ratio 0.2 --batch-size 16 --lr 0.01 --teacher-epochs 10 --epochs 10 "
              "--seed 2 --quiet --out " +
              (dir / "nad").string());
  ASSERT_EQ(erased.exit_code, 0) << erased.output;
  const nlohmann::json nad = read_json(dir / "nad" / "summary.json");
  EXPECT_DOUBLE_EQ(nad["before"]["asr"].get<double>(), bd["asr"].get<double>());
  EXPECT_LT(nad["after"]["asr"].get<double>(), 15.0) << read_text(dir / "nad" / "metrics.csv");
  EXPECT_GT(nad["after"]["clean_acc"].get<double>(), 90.0)
      << read_text(dir / "nad" / "metrics.csv");
  EXPECT_EQ(nad["clean_subset"]["size"], 60);
}

}  // namespace
}  // namespace nad::test
