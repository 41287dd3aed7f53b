// The CLI on torchvision's architectures: erase distilling stages named by --groups.
#include <gtest/gtest.h>

#include "nad/models/checkpoint.h"
#include "nad/models/classifier.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

// At 64x64 tv-resnet18's default groups are layer2..layer4; --groups layer1,layer2 rebuilds the
// model with those two stages, and NAD distils them (one 1000 weight each).
TEST(TorchvisionCli, EraseDistilsTheStagesNamedByGroups) {
  TempDir dir;
  write_synthetic_folder(dir / "data", 200, 40, 64, 4, 3);
  torch::manual_seed(1);
  const models::ModelSpec spec("tv-resnet18", 1, 4, 64, 64);
  models::save_checkpoint(dir / "model.pt", models::create_model(spec), spec);
  const std::string args = "erase --dataset folder --data-dir " + (dir / "data").string() +
                           " --model " + (dir / "model.pt").string() +
                           " --clean-ratio 0.2 --lr 0.01 --epochs 1 --teacher-epochs 1 "
                           "--crop-padding 0 --threads 2 --out ";
  CommandResult run = run_nad(args + (dir / "erase").string() + " --groups layer1,layer2");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("attention groups (--groups): layer1, layer2"), std::string::npos)
      << run.output;
  const nlohmann::json config = read_json(dir / "erase" / "config.json");
  EXPECT_EQ(config["groups"], nlohmann::json({"layer1", "layer2"}));
  EXPECT_EQ(config["betas"], nlohmann::json({1000.0, 1000.0}));

  // layer4 is 2x2 here and may be named; a stage that does not exist lists the candidates.
  CommandResult bad = run_nad(args + (dir / "bad").string() + " --groups layer1,layer9");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("candidates: layer1 (16x16), layer2 (8x8), layer3 (4x4), layer4 (2x2)"),
            std::string::npos)
      << bad.output;
}

}  // namespace
}  // namespace nad::test
