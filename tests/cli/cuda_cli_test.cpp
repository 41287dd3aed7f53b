// The real nad binary with --device cuda: the main job learns and erases a backdoor on the GPU,
// its checkpoints load on the CPU, and every subcommand that computes runs there.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli.h"
#include "support/cuda.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

TEST(CudaCli, BackdoorIsLearntThenErasedOnTheGpu) {
  NAD_REQUIRE_CUDA();
  TempDir dir;
  write_synthetic_idx(dir / "data", 3000, 600, 16, 4, 11);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  const std::string attack = " --attack badnets --trigger grid --target 0 --poison-rate 0.2";
  for (const std::string precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    const auto out = dir / precision;
    const std::string gpu = " --device cuda --precision " + precision;
    CommandResult trained =
        run_nad("train" + data + attack + gpu +
                " --arch mnist-cnn --epochs 8 --crop-padding 0 --seed 1 --quiet --out " +
                (out / "bd").string());
    ASSERT_EQ(trained.exit_code, 0) << trained.output;
    const nlohmann::json bd = read_json(out / "bd" / "summary.json");
    EXPECT_GT(bd["clean_acc"].get<double>(), 90.0) << trained.output;
    EXPECT_GT(bd["asr"].get<double>(), 90.0) << trained.output;
    EXPECT_EQ(read_json(out / "bd" / "config.json")["common"]["device"], "cuda");

    CommandResult erased =
        run_nad("erase" + data + attack + gpu + " --model " + (out / "bd" / "model.pt").string() +
                " --clean-ratio 0.2 --seed 2 --quiet --out " + (out / "nad").string());
    ASSERT_EQ(erased.exit_code, 0) << erased.output;
    const nlohmann::json nad = read_json(out / "nad" / "summary.json");
    EXPECT_GT(nad["before"]["asr"].get<double>(), 90.0);
    EXPECT_LT(nad["after"]["asr"].get<double>(), 10.0) << erased.output;
    EXPECT_GT(nad["after"]["clean_acc"].get<double>(),
              nad["before"]["clean_acc"].get<double>() - 5.0)
        << erased.output;

    // A model trained on the GPU is an ordinary checkpoint: the CPU evaluates it to the same
    // numbers, up to the GPU's rounding on a few borderline images.
    CommandResult on_cpu =
        run_nad("eval" + data + attack + " --device cpu --model " +
                (out / "nad" / "model.pt").string() + " --quiet --out " + (out / "eval").string());
    ASSERT_EQ(on_cpu.exit_code, 0) << on_cpu.output;
    const nlohmann::json cpu = read_json(out / "eval" / "summary.json");
    EXPECT_NEAR(cpu["asr"].get<double>(), nad["after"]["asr"].get<double>(), 1.0);
    EXPECT_NEAR(cpu["clean_acc"].get<double>(), nad["after"]["clean_acc"].get<double>(), 1.0);
  }
}

TEST(CudaCli, EverySubcommandRunsOnTheGpu) {
  NAD_REQUIRE_CUDA();
  TempDir dir;
  write_synthetic_idx(dir / "data", 800, 200, 16, 4, 5);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  const std::string gpu = " --device cuda --quiet";
  const std::string badnets = " --attack badnets --trigger grid --target 0 --poison-rate 0.2";
  // Every attack, including the ones that train a model first (trojan, cl) or search on it.
  for (const std::string attack : {"badnets", "blend", "trojan", "cl", "sig", "refool", "wanet"}) {
    CommandResult trained = run_nad(
        "train" + data + " --attack " + attack + gpu +
        " --target 0 --prep-epochs 1 --arch mnist-cnn --epochs 1 --out " + (dir / attack).string());
    EXPECT_EQ(trained.exit_code, 0) << attack << "\n" << trained.output;
  }
  ASSERT_EQ(run_nad("train" + data + badnets + gpu +
                    " --arch mnist-cnn --epochs 3 --crop-padding 0 --out " + (dir / "bd").string())
                .exit_code,
            0);
  const std::string model = " --model " + (dir / "bd" / "model.pt").string();
  const std::vector<std::string> commands = {
      "eval" + data + badnets + model,
      "finetune" + data + badnets + model + " --clean-ratio 0.25 --lr 0.01 --epochs 1",
      "erase" + data + badnets + model + " --clean-ratio 0.25 --teacher-epochs 1 --epochs 1",
      "prune" + data + badnets + model +
          " --clean-ratio 0.25 --lr 0.01 --epochs 1 --curve-points 3",
      "mcr" + data + badnets + model +
          " --clean-ratio 0.25 --lr 0.01 --epochs 1 --curve-epochs 1 --points 3",
      "attention" + data + badnets + model + " --images 2",
      "trojan-trigger" + data + model + " --layer 0 --size 3 --steps 5",
      "strip" + data + badnets + model + " --clean-ratio 0.25 --overlays 10",
  };
  int index = 0;
  for (const std::string& command : commands) {
    const auto out = dir / ("run" + std::to_string(index++));
    const std::string target =
        command.rfind("trojan-trigger", 0) == 0 ? (out / "trigger.png").string() : out.string();
    CommandResult result = run_nad(command + gpu + " --out " + target);
    // GPU machines' builds may lack Cairo; the maps were computed before the figure failed.
    if (result.output.find("built without Cairo") != std::string::npos) continue;
    EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  }
}

}  // namespace
}  // namespace nad::test
