// `nad attention`, and the figure and options `nad erase` gained, through the real CLI.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "nad/data/readers.h"
#include "nad/io/figure.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

TEST(AttentionCli, DrawsEveryModelAndErasePlotsBeforeAndAfter) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 800, 200, 16, 4, 9);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  const std::string attack = " --attack badnets --target 0 --poison-rate 0.2";
  ASSERT_EQ(run_nad("train" + data + attack +
                    " --arch mnist-cnn --epochs 3 --crop-padding 0 --quiet --out " +
                    (dir / "bd").string())
                .exit_code,
            0);
  const std::string model = (dir / "bd" / "model.pt").string();

  // Early stopping and a group selection, with the before/after figure.
  CommandResult erased = run_nad("erase" + data + attack + " --model " + model +
                                 " --clean-ratio 0.25 --lr 0.01 --epochs 6 --teacher-epochs 2 "
                                 "--patience 1 --groups 2 --quiet --out " +
                                 (dir / "nad").string());
  ASSERT_EQ(erased.exit_code, 0) << erased.output;
  const nlohmann::json config = read_json(dir / "nad" / "config.json");
  EXPECT_EQ(config["betas"], nlohmann::json({0.0, 1000.0}));  // mnist-cnn: 500, 1000
  EXPECT_EQ(config["patience"], 1);
  const nlohmann::json summary = read_json(dir / "nad" / "summary.json");
  ASSERT_TRUE(summary["best_epoch"]["student"].is_number()) << summary.dump();
  EXPECT_GE(summary["best_epoch"]["student"].get<int>(), 1);
  EXPECT_GT(summary["clean_subset"]["validation_size"].get<int>(), 0);
  CommandResult bad_group = run_nad("erase" + data + attack + " --model " + model +
                                    " --groups block9 --quiet --out " + (dir / "bad").string());
  EXPECT_EQ(bad_group.exit_code, 2);
  EXPECT_NE(bad_group.output.find("--groups"), std::string::npos) << bad_group.output;

  CommandResult drawn =
      run_nad("attention" + data + attack + " --model " + model + " --compare " +
              (dir / "nad" / "model.pt").string() +
              " --labels backdoored,NAD --images 3 --quiet --out " + (dir / "att").string());
  ASSERT_EQ(drawn.exit_code, 0) << drawn.output;
  const nlohmann::json att = read_json(dir / "att" / "summary.json");
  ASSERT_EQ(att["models"].size(), 2u);
  EXPECT_EQ(att["models"][1]["label"], "NAD");
  ASSERT_EQ(att["predictions"][0]["rows"].size(), 3u);
  // The rows are targeted images: none is of the target class 0.
  const nlohmann::json bd = read_json(dir / "bd" / "summary.json");
  int backdoor_hits = 0;
  for (const auto& p : att["predictions"][0]["triggered_prediction"]) backdoor_hits += p == 0;
  if (bd["asr"].get<double>() > 90) EXPECT_GE(backdoor_hits, 2);

  if (io::figures_available()) {
    // 3 images x 2 models = 6 rows of 104 px, 2 gaps between images; 2 groups = 4 columns.
    const torch::Tensor image = data::read_image(dir / "att" / "attention.png", 3);
    EXPECT_EQ(image.size(1), 190 + 4 * 104 + 8);
    EXPECT_EQ(image.size(0), 64 + 6 * 104 + 2 * 14 + 28);
    const torch::Tensor erase_figure = data::read_image(dir / "nad" / "attention.png", 3);
    EXPECT_EQ(erase_figure.size(0), 64 + 12 * 104 + 3 * 14 + 28);  // 4 images x 3 models
  }

  CommandResult mismatch = run_nad("attention" + data + attack + " --model " + model +
                                   " --labels a,b --out " + (dir / "att2").string());
  EXPECT_EQ(mismatch.exit_code, 2);
  EXPECT_NE(mismatch.output.find("--labels"), std::string::npos) << mismatch.output;
}

}  // namespace
}  // namespace nad::test
