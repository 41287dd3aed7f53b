// A TorchScript model that PyTorch backdoored: nad erases the backdoor and hands back a
// TorchScript model that PyTorch loads and scores as nad does; unsafe archives are refused.
#include <gtest/gtest.h>

#include "support/cli.h"
#include "support/python.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

TEST(TorchScriptCli, EraseCleansAPyTorchBackdooredModelAndHandsBackTorchScript) {
  if (!python_torch_available()) GTEST_SKIP() << "no /usr/bin/python3 with torch";
  TempDir dir;
  std::string output;
  ASSERT_EQ(run_python_script("make_torchscript_models.py",
                              "backdoored " + dir.path().string() + " 600", &output),
            0)
      << output;
  const nlohmann::json expected = read_json(dir / "expected.json");
  ASSERT_GT(expected["asr"].get<double>(), 90.0) << "PyTorch did not plant the backdoor";
  const std::string data = " --dataset folder --data-dir " + (dir / "data").string() +
                           " --attack badnets --trigger square --target 0 --threads 2";

  CommandResult eval = run_nad("eval" + data + " --model " + (dir / "bd.ts").string() + " --out " +
                               (dir / "eval").string());
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_NE(eval.output.find("TorchScript model"), std::string::npos) << eval.output;
  EXPECT_NE(eval.output.find("attention groups layer1, layer2, layer3"), std::string::npos)
      << eval.output;
  const nlohmann::json before = read_json(dir / "eval" / "summary.json");
  EXPECT_NEAR(before["asr"].get<double>(), expected["asr"].get<double>(), 0.1);
  EXPECT_NEAR(before["clean_acc"].get<double>(), expected["clean_acc"].get<double>(), 0.1);

  // This fixture's backdoor survives finetuning (the teacher keeps ASR 100), so NAD needs strong
  // attention weights here; at the defaults its ASR only fell to about 66 (issue 25's note).
  CommandResult erase = run_nad("erase" + data + " --model " + (dir / "bd.ts").string() +
                                " --groups layer1,layer2,layer3 --clean-ratio 0.25 --lr 0.05 "
                                "--beta 5000,5000,5000 --out " +
                                (dir / "erase").string());
  ASSERT_EQ(erase.exit_code, 0) << erase.output;
  const nlohmann::json after = read_json(dir / "erase" / "summary.json")["after"];
  EXPECT_LT(after["asr"].get<double>(), 50.0) << erase.output;
  EXPECT_GT(after["clean_acc"].get<double>(), 80.0) << erase.output;
  ASSERT_TRUE(fs::exists(dir / "erase" / "model.ts"));

  // PyTorch loads the cleaned model.ts and scores it as nad did.
  ASSERT_EQ(run_python_script(
                "make_torchscript_models.py",
                "measure " + (dir / "erase" / "model.ts").string() + " " + (dir / "data").string(),
                &output),
            0)
      << output;
  const nlohmann::json pytorch = nlohmann::json::parse(output.substr(output.rfind('{')));
  EXPECT_NEAR(pytorch["asr"].get<double>(), after["asr"].get<double>(), 0.1);
  EXPECT_NEAR(pytorch["clean_acc"].get<double>(), after["clean_acc"].get<double>(), 0.1);
}

TEST(TorchScriptCli, UnsafeArchivesAreRefusedBeforeAnythingRuns) {
  if (!python_torch_available()) GTEST_SKIP() << "no /usr/bin/python3 with torch";
  TempDir dir;
  std::string output;
  ASSERT_EQ(
      run_python_script("make_torchscript_models.py", "archives " + dir.path().string(), &output),
      0)
      << output;
  write_synthetic_folder(dir / "data", 20, 10, 32, 4, 1);
  for (const auto& [file, op] :
       std::vector<std::pair<std::string, std::string>>{{"calls_save.ts", "aten::save"},
                                                        {"calls_from_file.ts", "aten::from_file"},
                                                        {"custom_op.ts", "nad_test_ops::leak"}}) {
    CommandResult run =
        run_nad("eval --dataset folder --data-dir " + (dir / "data").string() + " --model " +
                (dir / file).string() + " --out " + (dir / ("out-" + file)).string());
    EXPECT_EQ(run.exit_code, 2) << run.output;
    EXPECT_NE(run.output.find(op), std::string::npos) << run.output;
    EXPECT_NE(run.output.find("code/__torch__.py"), std::string::npos) << run.output;
  }
  EXPECT_FALSE(fs::exists("/tmp/nad-leak.pt"));
}

}  // namespace
}  // namespace nad::test
