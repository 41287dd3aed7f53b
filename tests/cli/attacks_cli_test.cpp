// The attacks that need material made first, through the real CLI on generated data: Trojan
// (trigger optimised on a briefly trained clean model), CL (PGD on that model), Refool.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "nad/data/readers.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

TEST(AttacksCli, TrojanTrainMakesItsTriggerAndLearnsTheBackdoor) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 1500, 300, 16, 4, 21);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  CommandResult trained =
      run_nad("train" + data +
              " --attack trojan --target 0 --poison-rate 0.2 --trigger-size 4 --prep-epochs 1 "
              "--arch mnist-cnn --epochs 5 --crop-padding 0 --seed 2 --out " +
              (dir / "bd").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  ASSERT_TRUE(fs::exists(dir / "bd" / "trigger.png"));
  ASSERT_TRUE(fs::exists(dir / "bd" / "clean_model.pt"));
  torch::Tensor trigger = data::read_image(dir / "bd" / "trigger.png", 1);
  EXPECT_EQ(trigger.sizes(), (std::vector<int64_t>{4, 4, 1}));
  const nlohmann::json config = read_json(dir / "bd" / "config.json");
  EXPECT_EQ(config["attack_prep"]["trigger_file"], "trigger.png");
  EXPECT_EQ(config["attack_prep"]["clean_model_epochs"], 1);
  EXPECT_GT(config["attack_prep"]["activation_triggered"].get<double>(),
            config["attack_prep"]["activation_clean"].get<double>());
  const nlohmann::json bd = read_json(dir / "bd" / "summary.json");
  EXPECT_GT(bd["asr"].get<double>(), 90.0) << trained.output;
  EXPECT_GT(bd["clean_acc"].get<double>(), 85.0) << trained.output;

  // The saved trigger replays the same ASR; without it, a clear error.
  const std::string model = " --model " + (dir / "bd" / "model.pt").string();
  CommandResult evaluated =
      run_nad("eval" + data + model + " --attack trojan --target 0 --trigger-file " +
              (dir / "bd" / "trigger.png").string() + " --out " + (dir / "eval").string());
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  EXPECT_DOUBLE_EQ(read_json(dir / "eval" / "summary.json")["asr"].get<double>(),
                   bd["asr"].get<double>());
  CommandResult missing =
      run_nad("eval" + data + model + " --attack trojan --out " + (dir / "e2").string());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--trigger-file"), std::string::npos) << missing.output;

  // nad trojan-trigger on the clean model, for a chosen neuron.
  CommandResult made = run_nad(
      "trojan-trigger" + data + " --model " + (dir / "bd" / "clean_model.pt").string() +
      " --layer 0 --neuron 3 --size 3 --steps 20 --out " + (dir / "t" / "patch.png").string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  EXPECT_NE(made.output.find("neuron 3 of group 0"), std::string::npos) << made.output;
  EXPECT_EQ(data::read_image(dir / "t" / "patch.png", 1).sizes(), (std::vector<int64_t>{3, 3, 1}));
  CommandResult bad_neuron =
      run_nad("trojan-trigger" + data + " --model " + (dir / "bd" / "clean_model.pt").string() +
              " --layer 0 --neuron 99 --out " + (dir / "t2.png").string());
  EXPECT_EQ(bad_neuron.exit_code, 2) << bad_neuron.output;
  EXPECT_FALSE(fs::exists(dir / "t2.png"));
}

TEST(AttacksCli, CleanLabelAndRefoolPoisonKeepLabels) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 300, 60, 16, 4, 22);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  for (const std::string attack : {"cl", "refool"}) {
    const fs::path out = dir / attack;
    CommandResult result = run_nad("poison" + data + " --attack " + attack +
                                   " --target 2 --prep-epochs 1 --quiet --out " + out.string());
    ASSERT_EQ(result.exit_code, 0) << result.output;
    const nlohmann::json manifest = read_json(out / "manifest.json");
    EXPECT_EQ(manifest["attack"]["clean_label"], true);
    EXPECT_EQ(manifest["poisoned"]["new_labels"], manifest["poisoned"]["original_labels"]);
    for (const auto& label : manifest["poisoned"]["original_labels"]) EXPECT_EQ(label, 2);
    EXPECT_EQ(manifest["poisoned"]["count"].get<int64_t>(), 60);  // 0.8 of 75
    // Only CL needs a clean model.
    EXPECT_EQ(manifest.contains("attack_prep"), attack == "cl") << manifest.dump();
    EXPECT_EQ(fs::exists(out / "clean_model.pt"), attack == "cl");
  }
  CommandResult all2all = run_nad("poison" + data + " --attack refool --label-mode all2all --out " +
                                  (dir / "x").string());
  EXPECT_EQ(all2all.exit_code, 2);
}

TEST(AttacksCli, RefoolSelectionSavesTheKeptReflectionsForLaterCommands) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 400, 80, 16, 4, 23);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  const fs::path out = dir / "bd";
  CommandResult trained =
      run_nad("train" + data +
              " --attack refool --target 1 --reflection-select 3 --prep-epochs 1 --arch "
              "mnist-cnn --epochs 1 --seed 4 --out " +
              out.string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_NE(trained.output.find("kept 3 of 300 reflections"), std::string::npos) << trained.output;
  for (const char* file : {"000.png", "001.png", "002.png"}) {
    EXPECT_TRUE(fs::exists(out / "reflections" / file)) << file;
  }
  EXPECT_FALSE(fs::exists(out / "reflections" / "003.png"));
  EXPECT_TRUE(fs::exists(out / "selection_model.pt"));
  const nlohmann::json config = read_json(out / "config.json");
  EXPECT_EQ(config["attack_prep"]["reflections_kept"], 3);
  EXPECT_EQ(config["attack_prep"]["reflection_candidates"], 300);
  EXPECT_EQ(config["attack_prep"]["selection_model_epochs"], 1);

  // The saved reflections give later commands the same triggered test set.
  CommandResult evaluated =
      run_nad("eval" + data + " --attack refool --target 1 --reflections " +
              (out / "reflections").string() + " --model " + (out / "model.pt").string() +
              " --out " + (dir / "eval").string());
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  EXPECT_DOUBLE_EQ(read_json(dir / "eval" / "summary.json")["asr"].get<double>(),
                   read_json(out / "summary.json")["asr"].get<double>());

  CommandResult misplaced =
      run_nad("eval" + data + " --attack refool --reflection-select 3 " + "--model " +
              (out / "model.pt").string() + " --out " + (dir / "eval2").string());
  EXPECT_EQ(misplaced.exit_code, 2);
  EXPECT_NE(misplaced.output.find("--reflection-select"), std::string::npos) << misplaced.output;
}

}  // namespace
}  // namespace nad::test
