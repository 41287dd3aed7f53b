// --triggered-test: ASR measured on images someone else triggered, here the folder nad poison
// writes, against nad's own trigger.
#include <gtest/gtest.h>

#include <fstream>

#include "nad/io/png.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

class TriggeredTestCli : public ::testing::Test {
 protected:
  // A BadNets-backdoored mnist-cnn, and nad poison's folders for the same attack.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    write_synthetic_idx(*dir_ / "data", 1000, 200, 16, 4, 21);
    trained_ = run_nad("train" + data() + kAttack +
                       " --arch mnist-cnn --epochs 5 --crop-padding 0 --seed 1 --quiet --out " +
                       (*dir_ / "bd").string());
    poisoned_ =
        run_nad("poison" + data() + kAttack + " --quiet --out " + (*dir_ / "poison").string());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(trained_.exit_code, 0) << trained_.output;
    ASSERT_EQ(poisoned_.exit_code, 0) << poisoned_.output;
  }
  static std::string data() { return " --dataset mnist --data-dir " + (*dir_ / "data").string(); }
  static std::string model() { return " --model " + (*dir_ / "bd" / "model.pt").string(); }
  static std::string folder() { return (*dir_ / "poison" / "test_triggered").string(); }

  static constexpr const char* kAttack = " --attack badnets --target 1 --poison-rate 0.2";
  static TempDir* dir_;
  static CommandResult trained_;
  static CommandResult poisoned_;
};
TempDir* TriggeredTestCli::dir_ = nullptr;
CommandResult TriggeredTestCli::trained_;
CommandResult TriggeredTestCli::poisoned_;

// nad poison's test_triggered/ holds exactly the images nad measures ASR on: the same ASR and
// robust accuracy as the built-in trigger, and summary.json says where each came from.
TEST_F(TriggeredTestCli, PoisonsFolderGivesTheBuiltInTriggersAsr) {
  CommandResult builtin =
      run_nad("eval" + data() + kAttack + model() + " --quiet --out " + (*dir_ / "e1").string());
  ASSERT_EQ(builtin.exit_code, 0) << builtin.output;
  CommandResult given = run_nad("eval" + data() + model() + " --triggered-test " + folder() +
                                " --target 1 --quiet --out " + (*dir_ / "e2").string());
  ASSERT_EQ(given.exit_code, 0) << given.output;
  const nlohmann::json a = read_json(*dir_ / "e1" / "summary.json");
  const nlohmann::json b = read_json(*dir_ / "e2" / "summary.json");
  EXPECT_GT(a["asr"].get<double>(), 50.0) << "the backdoor was not learnt";
  EXPECT_DOUBLE_EQ(a["asr"].get<double>(), b["asr"].get<double>());
  EXPECT_DOUBLE_EQ(a["robust_acc"].get<double>(), b["robust_acc"].get<double>());
  EXPECT_DOUBLE_EQ(a["clean_acc"].get<double>(), b["clean_acc"].get<double>());
  EXPECT_NE(a["asr_source"].get<std::string>().find("nad's badnets trigger"), std::string::npos);
  EXPECT_NE(b["asr_source"].get<std::string>().find("--triggered-test " + folder()),
            std::string::npos)
      << b["asr_source"];
  EXPECT_EQ(read_json(*dir_ / "e2" / "config.json")["common"]["triggered_test"], folder());

  // Another target is measured against the same images: the ASR changes.
  CommandResult other = run_nad("eval" + data() + model() + " --triggered-test " + folder() +
                                " --target 2 --quiet --out " + (*dir_ / "e3").string());
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_LT(read_json(*dir_ / "e3" / "summary.json")["asr"].get<double>(),
            a["asr"].get<double>() - 20);
}

// A defense measures its before and after on the given folder.
TEST_F(TriggeredTestCli, DefenseMeasuresOnTheGivenImages) {
  const fs::path out = *dir_ / "ft";
  CommandResult run =
      run_nad("finetune" + data() + model() + " --triggered-test " + folder() +
              " --target 1 --epochs 1 --lr 0.01 --crop-padding 0 --quiet --out " + out.string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json summary = read_json(out / "summary.json");
  EXPECT_TRUE(summary["before"]["asr"].is_number()) << summary.dump();
  EXPECT_TRUE(summary["after"]["asr"].is_number()) << summary.dump();
  EXPECT_DOUBLE_EQ(summary["before"]["asr"].get<double>(),
                   read_json(*dir_ / "bd" / "summary.json")["asr"].get<double>());
  EXPECT_NE(summary["asr_source"].get<std::string>().find("--triggered-test"), std::string::npos);
}

// nad table with a row for an attack nad does not implement: the model and its triggered test
// images are given, and every cell measures ASR on those images.
TEST_F(TriggeredTestCli, TableRowOfAnUnknownAttack) {
  const nlohmann::json experiment = {{"name", "given"},
                                     {"seed", 0},
                                     {"clean_ratio", 0.25},
                                     {"defense_options", "--lr 0.01 --epochs 1 --crop-padding 0"},
                                     {"datasets", {{{"dataset", "mnist"}, {"target", 1}}}},
                                     {"attacks", {"their-attack"}},
                                     {"defenses", {"finetune"}}};
  const fs::path file = *dir_ / "given.json";
  {
    std::ofstream stream(file);
    stream << experiment.dump();
  }
  const std::string table =
      "table --config " + file.string() + " --data-dir " + (*dir_ / "data").string() +
      " --quiet --model mnist/their-attack=" + (*dir_ / "bd" / "model.pt").string();
  CommandResult no_images = run_nad(table + " --out " + (*dir_ / "table-bad").string());
  EXPECT_EQ(no_images.exit_code, 2);
  EXPECT_NE(no_images.output.find("--triggered-test mnist/their-attack=DIR"), std::string::npos)
      << no_images.output;

  CommandResult run = run_nad(table + " --triggered-test mnist/their-attack=" + folder() +
                              " --out " + (*dir_ / "table").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json row = read_json(*dir_ / "table" / "results.json")["rows"][0];
  EXPECT_DOUBLE_EQ(row["before"]["asr"].get<double>(),
                   read_json(*dir_ / "bd" / "summary.json")["asr"].get<double>());
  const nlohmann::json after = row["defenses"]["Finetuning"]["summary"];
  EXPECT_TRUE(after["after"]["asr"].is_number()) << after.dump();
  EXPECT_NE(after["asr_source"].get<std::string>().find(folder()), std::string::npos);
}

TEST_F(TriggeredTestCli, MistakesExitTwo) {
  const std::string out = " --quiet --out " + (*dir_ / "bad").string();
  CommandResult both =
      run_nad("eval" + data() + model() + kAttack + " --triggered-test " + folder() + out);
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.output.find("give one of them"), std::string::npos) << both.output;

  // Folders named by class names cannot say which class is which when one is missing.
  const fs::path named = *dir_ / "named";
  for (const char* name : {"cat", "dog"}) {
    fs::create_directories(named / name);
    io::write_png(named / name / "0.png", torch::zeros({16, 16, 1}, torch::kUInt8));
  }
  CommandResult names = run_nad("eval" + data() + model() + " --triggered-test " + named.string() +
                                " --target 1" + out);
  EXPECT_EQ(names.exit_code, 2);
  EXPECT_NE(names.output.find("--triggered-test"), std::string::npos) << names.output;
  EXPECT_NE(names.output.find("by class number"), std::string::npos) << names.output;

  const fs::path small = *dir_ / "small";
  fs::create_directories(small / "0");
  io::write_png(small / "0" / "0.png", torch::zeros({8, 8, 1}, torch::kUInt8));
  CommandResult size = run_nad("eval" + data() + model() + " --triggered-test " + small.string() +
                               " --target 1" + out);
  EXPECT_EQ(size.exit_code, 2);
  EXPECT_NE(size.output.find("not resized"), std::string::npos) << size.output;

  CommandResult missing = run_nad("eval" + data() + model() + " --triggered-test " +
                                  (*dir_ / "nope").string() + " --target 1" + out);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--triggered-test"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace nad::test
