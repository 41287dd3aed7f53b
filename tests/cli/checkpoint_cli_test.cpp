// The real binary on PyTorch checkpoints: eval of a bare state_dict, export, refusals.
#include <gtest/gtest.h>

#include "nad/io/torch_file.h"
#include "nad/models/checkpoint.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = fs::path(NAD_FIXTURES_DIR) / "checkpoints";

TEST(CheckpointCli, EvalReadsAPyTorchStateDictAndExportWritesOne) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 64, 64, 16, 4, 5);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  // A DataParallel-style bare state_dict of an mnist-cnn, as PyTorch would save it.
  models::Classifier model = models::create_model({"mnist-cnn", 1, 10, 16, 16});
  models::NamedTensors state;
  for (const auto& [name, tensor] : models::model_state(model)) {
    state.emplace_back("module." + name, tensor.detach());
  }
  io::write_torch_state_dict(dir / "sd.pt", state, io::TorchFormat::kLegacy);

  CommandResult evaluated = run_nad("eval" + data + " --model " + (dir / "sd.pt").string() +
                                    " --quiet --out " + (dir / "eval").string());
  EXPECT_EQ(evaluated.exit_code, 0) << evaluated.output;
  CommandResult wrong = run_nad("eval" + data + " --model " + (dir / "sd.pt").string() +
                                " --arch resnet18 --quiet --out " + (dir / "eval2").string());
  EXPECT_EQ(wrong.exit_code, 2) << wrong.output;
  EXPECT_NE(wrong.output.find("missing keys"), std::string::npos) << wrong.output;

  CommandResult exported = run_nad("export --model " + (dir / "sd.pt").string() +
                                   " --input-shape 1,16,16 --out " + (dir / "out.pt").string());
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  const io::TorchStateDict back = io::read_torch_state_dict(dir / "out.pt");
  EXPECT_EQ(back.format, io::TorchFormat::kZip);
  ASSERT_EQ(back.tensors.size(), state.size());
  EXPECT_EQ(back.tensors[0].first, "conv1.weight");
  EXPECT_TRUE(back.tensors[0].second.equal(state[0].second));
}

TEST(CheckpointCli, WarnsAboutSkippedObjectsAndRefusesCode) {
  TempDir dir;
  CommandResult skipped =
      run_nad("export --model " + (kFixtures / "wrn10_attack_result.pt").string() +
              " --format legacy --out " + (dir / "wrn.pt").string());
  ASSERT_EQ(skipped.exit_code, 0) << skipped.output;
  EXPECT_NE(skipped.output.find("nad: warning:"), std::string::npos) << skipped.output;
  EXPECT_NE(skipped.output.find("PIL.Image.Image"), std::string::npos) << skipped.output;
  EXPECT_EQ(io::read_torch_state_dict(dir / "wrn.pt").format, io::TorchFormat::kLegacy);

  CommandResult refused = run_nad("export --model " + (kFixtures / "evil_system_zip.pt").string() +
                                  " --out " + (dir / "evil.pt").string());
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("posix.system"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(dir / "evil.pt"));
}

}  // namespace
}  // namespace nad::test
