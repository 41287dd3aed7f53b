// `nad poison` on a tiny generated dataset, and the samples.png that `nad train` writes.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "nad/data/readers.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

int64_t count_files(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) n += entry.is_regular_file();
  return n;
}

TEST(PoisonCli, SigWritesFolderManifestAndSamples) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 200, 40, 16, 10, 5);
  CommandResult result =
      run_nad("poison --dataset mnist --data-dir " + (dir / "data").string() +
              " --attack sig --target 1 --seed 3 --quiet --out " + (dir / "out").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(count_files(dir / "out" / "train"), 200);
  EXPECT_EQ(count_files(dir / "out" / "test"), 40);

  const nlohmann::json manifest = read_json(dir / "out" / "manifest.json");
  const int64_t target_size = count_files(dir / "out" / "train" / "1");
  ASSERT_GT(target_size, 0);
  // Clean-label default: 80% of the target class, labels kept.
  EXPECT_EQ(manifest["poisoned"]["count"].get<int64_t>(), std::llround(0.8 * target_size));
  EXPECT_EQ(manifest["poisoned"]["indices"].size(), manifest["poisoned"]["count"].get<size_t>());
  EXPECT_EQ(manifest["poisoned"]["new_labels"], manifest["poisoned"]["original_labels"]);
  EXPECT_EQ(manifest["attack"]["name"], "sig");
  EXPECT_EQ(manifest["attack"]["delta"], 20.0);
  EXPECT_EQ(manifest["seed"], 3);
  EXPECT_EQ(manifest["noise_mode"]["count"], 0);

  // A poisoned row's PNG decodes to the image size.
  const int64_t row = manifest["poisoned"]["indices"][0].get<int64_t>();
  torch::Tensor png =
      data::read_image(dir / "out" / "train" / "1" / (std::to_string(row) + ".png"), 1);
  EXPECT_EQ(png.sizes(), (std::vector<int64_t>{16, 16, 1}));
  // 10 classes (the mnist reader) x 4 pairs of 16 px images upscaled 6x.
  torch::Tensor samples = data::read_image(dir / "out" / "samples.png", 1);
  EXPECT_EQ(samples.sizes(), (std::vector<int64_t>{10 * 100, 4 * 202, 1}));

  // The folder dataset reads the output back with the same labels.
  data::DatasetPair back = data::read_image_folder(dir / "out", 0, "folder");
  EXPECT_EQ(back.train.size(), 200);
  EXPECT_EQ(back.num_classes(), 10);
  EXPECT_EQ(back.train.labels.eq(1).sum().item<int64_t>(), target_size);
}

// Reads a .npy file nad wrote: its header and its raw bytes.
std::pair<std::string, std::string> read_npy(const fs::path& file) {
  const std::string bytes = read_text(file);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t length = static_cast<unsigned char>(bytes[8]) |
                        (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
  EXPECT_EQ((10 + length) % 64, 0u);
  return {bytes.substr(10, length), bytes.substr(10 + length)};
}

// --format npy: NumPy arrays of the poisoned, clean and triggered sets, the triggered test set
// being exactly what nad measures ASR on (here: BadNets' grid on the 30 non-target images).
TEST(PoisonCli, NpyFormatWritesTheArraysAndTheTriggeredTestSet) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 200, 40, 16, 4, 5);
  CommandResult result =
      run_nad("poison --dataset mnist --data-dir " + (dir / "data").string() +
              " --attack badnets --target 1 --format npy --quiet --out " + (dir / "out").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "train"));
  const auto [train_header, train] = read_npy(dir / "out" / "train_images.npy");
  EXPECT_NE(train_header.find("'descr': '|u1'"), std::string::npos) << train_header;
  EXPECT_NE(train_header.find("'shape': (200, 16, 16, 1)"), std::string::npos) << train_header;
  EXPECT_EQ(train.size(), 200u * 16 * 16);
  const auto [labels_header, labels] = read_npy(dir / "out" / "test_triggered_labels.npy");
  EXPECT_NE(labels_header.find("'descr': '<i8'"), std::string::npos) << labels_header;
  // MNIST reports 10 classes; the synthetic labels are 0-3, 10 per class: 30 are not class 1.
  EXPECT_NE(labels_header.find("'shape': (30,)"), std::string::npos) << labels_header;
  const auto [images_header, images] = read_npy(dir / "out" / "test_triggered_images.npy");
  ASSERT_EQ(images.size(), 30u * 16 * 16);
  // The grid's bottom row, right to left: 255, 0, 255.
  for (size_t i = 0; i < 30; ++i) {
    const unsigned char* image = reinterpret_cast<const unsigned char*>(images.data()) + i * 256;
    EXPECT_EQ(image[15 * 16 + 15], 255);
    EXPECT_EQ(image[15 * 16 + 14], 0);
    EXPECT_EQ(image[15 * 16 + 13], 255);
  }
  const nlohmann::json manifest = read_json(dir / "out" / "manifest.json");
  EXPECT_EQ(manifest["format"], "npy");
  // The poisoned and the clean training sets differ exactly in the poisoned rows' corners.
  const auto [clean_header, clean] = read_npy(dir / "out" / "clean_train_images.npy");
  EXPECT_NE(clean, train);
  EXPECT_EQ(clean.size(), train.size());
}

TEST(PoisonCli, WaNetRecordsNoiseModeRows) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 200, 40, 16, 10, 6);
  CommandResult result = run_nad("poison --dataset mnist --data-dir " + (dir / "data").string() +
                                 " --attack wanet --poison-rate 0.1 --label-mode all2all --quiet "
                                 "--out " +
                                 (dir / "out").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const nlohmann::json manifest = read_json(dir / "out" / "manifest.json");
  EXPECT_EQ(manifest["poisoned"]["count"], 20);
  EXPECT_EQ(manifest["noise_mode"]["count"], 40);
  EXPECT_EQ(manifest["attack"]["label_mode"], "all2all");
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(manifest["poisoned"]["new_labels"][i].get<int64_t>(),
              (manifest["poisoned"]["original_labels"][i].get<int64_t>() + 1) % 10);
  }
}

TEST(PoisonCli, UserMistakesExitTwo) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 40, 8, 16, 10, 7);
  const std::string data = "poison --dataset mnist --data-dir " + (dir / "data").string();
  CommandResult all2all =
      run_nad(data + " --attack sig --label-mode all2all --out " + (dir / "a").string());
  EXPECT_EQ(all2all.exit_code, 2) << all2all.output;
  EXPECT_NE(all2all.output.find("all2one"), std::string::npos) << all2all.output;
  CommandResult no_attack = run_nad(data + " --out " + (dir / "b").string());
  EXPECT_EQ(no_attack.exit_code, 2) << no_attack.output;
  EXPECT_NE(no_attack.output.find("--attack"), std::string::npos) << no_attack.output;
}

TEST(PoisonCli, TrainWritesSamples) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 200, 40, 16, 10, 8);
  CommandResult result =
      run_nad("train --dataset mnist --data-dir " + (dir / "data").string() +
              " --arch mnist-cnn --epochs 1 --attack wanet --quiet --out " + (dir / "t").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(data::read_image(dir / "t" / "samples.png", 1).size(0), 10 * 100);
  EXPECT_TRUE(fs::exists(dir / "t" / "noise_indices.txt"));
  EXPECT_EQ(read_json(dir / "t" / "summary.json")["poisoned"]["noise_count"], 40);
}

}  // namespace
}  // namespace nad::test
