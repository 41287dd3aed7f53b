// A BackdoorBench record trained in PyTorch with BackdoorBench's CIFAR-10 normalisation: nad
// reads its architecture and normalisation from the record and scores it as PyTorch did.
#include <gtest/gtest.h>

#include <cmath>

#include "support/cli.h"
#include "support/python.h"
#include "support/temp_dir.h"

namespace nad {
namespace {

class BackdoorBenchRecord : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_torch_available()) return;
    dir_ = new test::TempDir();
    std::string output;
    made_ = test::run_python_script("make_backdoorbench_record.py", dir_->path().string() + " 100",
                                    &output) == 0;
    if (!made_) std::fprintf(stderr, "%s\n", output.c_str());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!test::python_torch_available()) GTEST_SKIP() << "no /usr/bin/python3 with torch";
    ASSERT_TRUE(made_) << "make_backdoorbench_record.py failed";
  }
  static std::string eval_args(const std::string& model, const std::string& out) {
    return "eval --model " + model + " --dataset folder --data-dir " + (*dir_ / "data").string() +
           " --attack badnets --trigger square --target 0 --threads 2 --out " + out;
  }

  static test::TempDir* dir_;
  static bool made_;
};
test::TempDir* BackdoorBenchRecord::dir_ = nullptr;
bool BackdoorBenchRecord::made_ = false;

TEST_F(BackdoorBenchRecord, EvalNeedsNoArchOrNormAndMatchesPyTorchAndReadsItsBdTestFolder) {
  const nlohmann::json expected = test::read_json(*dir_ / "expected.json");
  const auto out = *dir_ / "eval";
  const test::CommandResult run =
      test::run_nad(eval_args((*dir_ / "attack_result.pt").string(), out.string()));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("preact-resnet18 (from the BackdoorBench record's model_name)"),
            std::string::npos)
      << run.output;
  const nlohmann::json summary = test::read_json(out / "summary.json");
  EXPECT_NEAR(summary["clean_acc"].get<double>(), expected["clean_acc"].get<double>(), 0.1);
  EXPECT_NEAR(summary["asr"].get<double>(), expected["asr"].get<double>(), 0.1);
  const nlohmann::json& loaded = summary["models_loaded"].at(0);
  EXPECT_EQ(loaded["arch"], "preact-resnet18");
  EXPECT_EQ(loaded["input_norm"]["name"], "cifar10");
  EXPECT_EQ(loaded["input_norm_source"], "BackdoorBench record (clean_data 'cifar10')");
  EXPECT_EQ(test::read_json(out / "config.json")["models_loaded"], summary["models_loaded"]);

  // Without the normalisation the same weights score differently: the check above can fail.
  const auto plain = *dir_ / "eval-none";
  const test::CommandResult none = test::run_nad(
      eval_args((*dir_ / "attack_result.pt").string(), plain.string()) + " --input-norm none");
  ASSERT_EQ(none.exit_code, 0) << none.output;
  const nlohmann::json wrong = test::read_json(plain / "summary.json");
  EXPECT_GT(std::abs(wrong["clean_acc"].get<double>() - expected["clean_acc"].get<double>()) +
                std::abs(wrong["asr"].get<double>() - expected["asr"].get<double>()),
            1.0);

  // BackdoorBench's saved bd_test folder, read as it is, gives the ASR PyTorch measured (one
  // test with the above: each test process makes the record again, which takes a while).
  const auto bd_out = *dir_ / "eval-bd-test";
  const test::CommandResult bd_run = test::run_nad(
      "eval --model " + (*dir_ / "attack_result.pt").string() + " --dataset folder --data-dir " +
      (*dir_ / "data").string() + " --triggered-test " + (*dir_ / "bd_test_dataset").string() +
      " --target 0 --threads 2 --out " + bd_out.string());
  ASSERT_EQ(bd_run.exit_code, 0) << bd_run.output;
  const nlohmann::json bd_summary = test::read_json(bd_out / "summary.json");
  EXPECT_NEAR(bd_summary["asr"].get<double>(), expected["asr"].get<double>(), 0.1);
  EXPECT_NEAR(bd_summary["clean_acc"].get<double>(), expected["clean_acc"].get<double>(), 0.1);
  // The same images as nad's square trigger makes: the same robust accuracy (75.56, not 0).
  EXPECT_DOUBLE_EQ(bd_summary["robust_acc"].get<double>(), summary["robust_acc"].get<double>());
  EXPECT_NE(bd_summary["asr_source"].get<std::string>().find("90 images"), std::string::npos)
      << bd_summary["asr_source"];
}

TEST_F(BackdoorBenchRecord, UnknownModelNameListsTheKnownOnes) {
  std::string output;
  ASSERT_EQ(test::run_python_script("make_backdoorbench_record.py",
                                    "rename " + (*dir_ / "attack_result.pt").string() + " " +
                                        (*dir_ / "senet.pt").string() + " senet18",
                                    &output),
            0)
      << output;
  const test::CommandResult run =
      test::run_nad(eval_args((*dir_ / "senet.pt").string(), (*dir_ / "eval-senet").string()));
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("model_name 'senet18', which nad does not know (known: "),
            std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("preactresnet18"), std::string::npos) << run.output;
}

TEST_F(BackdoorBenchRecord, InputNormWithTheWrongChannelCountIsAUserError) {
  const test::CommandResult run =
      test::run_nad(eval_args((*dir_ / "attack_result.pt").string(), (*dir_ / "eval-1c").string()) +
                    " --input-norm 0.5/0.5");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("has 1 channels, but the model's inputs have 3"), std::string::npos)
      << run.output;
}

}  // namespace
}  // namespace nad
