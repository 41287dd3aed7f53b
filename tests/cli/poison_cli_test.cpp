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
