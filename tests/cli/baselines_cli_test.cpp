// `nad prune` and `nad mcr` through the real CLI on a small generated backdoor.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "nad/models/checkpoint.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

TEST(BaselinesCli, PruneAndMcrWriteTheirCurves) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 800, 200, 16, 4, 9);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  const std::string attack = " --attack badnets --target 0 --poison-rate 0.2";
  ASSERT_EQ(run_nad("train" + data + attack +
                    " --arch mnist-cnn --epochs 3 --crop-padding 0 --quiet --out " +
                    (dir / "bd").string())
                .exit_code,
            0);
  const std::string model = " --model " + (dir / "bd" / "model.pt").string();
  const nlohmann::json bd = read_json(dir / "bd" / "summary.json");

  CommandResult pruned = run_nad(
      "prune" + data + attack + model +
      " --clean-ratio 0.25 --lr 0.01 --epochs 1 --curve-points 3 --out " + (dir / "fp").string());
  ASSERT_EQ(pruned.exit_code, 0) << pruned.output;
  const nlohmann::json fp = read_json(dir / "fp" / "summary.json");
  EXPECT_EQ(fp["layer"], "conv2");
  EXPECT_EQ(fp["channels"], 64);
  const int64_t count = fp["pruned_count"].get<int64_t>();
  EXPECT_LE(count, 57);  // --prune-ratio 0.9
  EXPECT_EQ(fp["pruned_channels"].size(), static_cast<size_t>(count));
  EXPECT_EQ(fp["clean_subset"]["validation_size"].get<int64_t>(),
            20);  // held out even at a fixed lr
  // The path starts at the unpruned model, whose test numbers are the "before" ones.
  EXPECT_DOUBLE_EQ(fp["curve"][0]["test"]["clean_acc"].get<double>(),
                   bd["clean_acc"].get<double>());
  EXPECT_EQ(count_lines(dir / "fp" / "prune_curve.csv"), 1 + count + 1);
  // The pruned channels stay pruned through finetuning: the weights reading them are zero.
  models::LoadOptions load;
  load.input_shape = {1, 16, 16};
  models::LoadedModel saved = models::load_checkpoint(dir / "fp" / "model.pt", load);
  torch::Tensor fc1 = saved.model->named_parameters()["fc1.weight"].view({128, 64, -1});
  for (const auto& channel : fp["pruned_channels"]) {
    EXPECT_TRUE(fc1.select(1, channel.get<int64_t>()).eq(0).all().item<bool>()) << channel;
  }
  EXPECT_GT(fc1.ne(0).sum().item<int64_t>(), 0);

  CommandResult repaired = run_nad("mcr" + data + attack + model +
                                   " --clean-ratio 0.25 --lr 0.01 --epochs 1 --curve-epochs 1 "
                                   "--points 3 --out " +
                                   (dir / "mcr").string());
  ASSERT_EQ(repaired.exit_code, 0) << repaired.output;
  const nlohmann::json mcr = read_json(dir / "mcr" / "summary.json");
  ASSERT_EQ(mcr["curve"].size(), 3u);
  // t = 0 is the backdoored model itself.
  EXPECT_DOUBLE_EQ(mcr["curve"][0]["t"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(mcr["curve"][0]["clean_acc"].get<double>(), bd["clean_acc"].get<double>());
  EXPECT_DOUBLE_EQ(mcr["curve"][0]["asr"].get<double>(), bd["asr"].get<double>());
  EXPECT_DOUBLE_EQ(mcr["t"].get<double>(), 0.3);
  EXPECT_EQ(count_lines(dir / "mcr" / "mcr_curve.csv"), 1 + 3);
  EXPECT_TRUE(std::filesystem::exists(dir / "mcr" / "endpoint.pt"));
  // The far end may be given instead of finetuned; a different architecture is refused.
  CommandResult given = run_nad(
      "mcr" + data + attack + model + " --end-model " + (dir / "mcr" / "endpoint.pt").string() +
      " --clean-ratio 0.25 --lr 0.01 --curve-epochs 1 --points 2 --out " + (dir / "mcr2").string());
  ASSERT_EQ(given.exit_code, 0) << given.output;
  EXPECT_DOUBLE_EQ(read_json(dir / "mcr2" / "summary.json")["curve"][1]["clean_acc"].get<double>(),
                   mcr["curve"][2]["clean_acc"].get<double>());
}

}  // namespace
}  // namespace nad::test
