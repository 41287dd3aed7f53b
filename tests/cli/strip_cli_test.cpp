// `nad strip` through the real CLI on a small generated backdoor: calibration, then the gate.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nad/attacks/attack.h"
#include "nad/data/dataset.h"
#include "nad/io/figure.h"
#include "nad/io/png.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

// Rows of a CSV file with a header line, split at commas (no quoted fields here).
std::vector<std::vector<std::string>> read_csv_rows(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream s(line);
    for (std::string field; std::getline(s, field, ',');) fields.push_back(field);
    rows.push_back(fields);
  }
  return rows;
}

TEST(StripCli, CalibratesOnABackdoorThenFlagsTriggeredImages) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 800, 200, 16, 4, 9);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  // A white square, poisoned heavily: added to an overlay it stays white (saturated), so it keeps
  // winning over the overlays (BadNets' grid, 60-100% FAR with the half-and-half blend, loses to
  // the synthetic shapes, which are as strong as it).
  const std::string attack = " --attack badnets --trigger square --target 0 --poison-rate 0.4";
  ASSERT_EQ(run_nad("train" + data + attack +
                    " --arch mnist-cnn --epochs 5 --batch-size 32 --crop-padding 0 --quiet --out " +
                    (dir / "bd").string())
                .exit_code,
            0);
  const std::string model = " --model " + (dir / "bd" / "model.pt").string();

  CommandResult calibrated =
      run_nad("strip" + data + attack + model + " --clean-ratio 0.25 --overlays 20 --out " +
              (dir / "strip").string());
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.output;
  const nlohmann::json strip = read_json(dir / "strip" / "strip.json");
  const nlohmann::json& calibration = strip["calibration"];
  // The trigger keeps the blends at the target class: lower entropy, mostly flagged.
  EXPECT_LT(calibration["triggered_entropy_mean"].get<double>(),
            calibration["clean_entropy_mean"].get<double>());
  EXPECT_LT(calibration["far_percent"].get<double>(), 50.0) << calibration.dump();
  EXPECT_LE(calibration["frr_percent"].get<double>(), 1.0);  // --frr 0.01 of 200 clean images
  EXPECT_EQ(calibration["clean_test_images"], 200);
  EXPECT_EQ(calibration["triggered_test_images"], 150);  // the rows not of class 0
  EXPECT_EQ(strip["model"]["arch"], "mnist-cnn");
  EXPECT_EQ(strip["model"]["num_classes"], 10);  // the mnist reader's classes
  EXPECT_EQ(strip["model"]["input_shape"], (nlohmann::json{1, 16, 16}));
  EXPECT_EQ(strip["model"]["fingerprint"].get<std::string>().rfind("sha256:", 0), 0u);
  EXPECT_EQ(strip["overlays"]["count"], 20);
  EXPECT_EQ(strip["overlays"]["train_indices"].size(), 20u);
  EXPECT_TRUE(std::filesystem::exists(dir / "strip" / "overlays.png"));
  EXPECT_EQ(std::filesystem::exists(dir / "strip" / "entropy.png"), io::figures_available());
  EXPECT_EQ(count_lines(dir / "strip" / "entropies.csv"), 1 + 200 + 150);
  const nlohmann::json summary = read_json(dir / "strip" / "summary.json");
  EXPECT_EQ(summary["complete"], true);
  EXPECT_DOUBLE_EQ(summary["threshold"].get<double>(), strip["threshold"].get<double>());
  EXPECT_EQ(read_json(dir / "strip" / "config.json")["overlays"], 20);

  // The gate: four clean and four triggered test images of classes 1-3 as PNG files.
  const data::DatasetPair pair = data::load_dataset({"mnist", (dir / "data").string(), 0});
  attacks::AttackOptions options;
  options.name = "badnets";
  options.trigger = "square";
  const auto badnets = attacks::create_attack(options, 16, 16, 1, 10);
  const std::vector<int64_t> rows = {1, 2, 3, 5};
  const torch::Tensor clean = pair.test.images.index_select(0, torch::tensor(rows));
  const torch::Tensor triggered = badnets->apply(clean);
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string row = std::to_string(rows[i]);
    io::write_png(dir / "images" / ("clean_" + row + ".png"), clean[static_cast<int64_t>(i)]);
    io::write_png(dir / "images" / ("triggered_" + row + ".png"),
                  triggered[static_cast<int64_t>(i)]);
  }
  write_bytes(dir / "images" / "notes.txt", std::string("not an image"));
  CommandResult gate =
      run_nad("strip --threshold-file " + (dir / "strip" / "strip.json").string() + " --images " +
              (dir / "images").string() + model + " --out " + (dir / "gate").string());
  const nlohmann::json flagged = read_json(dir / "gate" / "summary.json");
  EXPECT_EQ(gate.exit_code, flagged["flagged"].get<int>() > 0 ? 1 : 0) << gate.output;
  const auto csv = read_csv_rows(dir / "gate" / "flags.csv");
  ASSERT_EQ(csv.size(), 8u);  // notes.txt skipped
  int clean_flagged = 0, triggered_flagged = 0;
  // The gate re-reads the overlays from overlays.png: the same entropies as the calibration's.
  std::map<std::string, double> calibrated_entropy;
  for (const auto& r : read_csv_rows(dir / "strip" / "entropies.csv")) {
    calibrated_entropy[r[0] + "_" + r[1] + ".png"] = std::stod(r[2]);
  }
  for (const auto& r : csv) {
    ASSERT_EQ(r.size(), 4u);
    const bool is_flagged = r[2] == "1";
    (r[0].rfind("triggered", 0) == 0 ? triggered_flagged : clean_flagged) += is_flagged;
    ASSERT_TRUE(calibrated_entropy.count(r[0])) << r[0];
    EXPECT_NEAR(std::stod(r[1]), calibrated_entropy[r[0]], 2e-6) << r[0];
  }
  EXPECT_GT(triggered_flagged, clean_flagged);
  EXPECT_EQ(flagged["flagged"].get<int>(), clean_flagged + triggered_flagged);
}

TEST(StripCli, BadInputsExitWith2AndNameTheProblem) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 100, 40, 16, 4, 1);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  for (const std::string seed : {"0", "1"}) {
    ASSERT_EQ(run_nad("train" + data + " --arch mnist-cnn --epochs 1 --quiet --seed " + seed +
                      " --out " + (dir / ("m" + seed)).string())
                  .exit_code,
              0);
  }
  const std::string model = " --model " + (dir / "m0" / "model.pt").string();

  // No clean images to draw overlays from, or fewer than --overlays.
  CommandResult none =
      run_nad("strip" + data + model + " --clean-ratio 0.001 --out " + (dir / "none").string());
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.output.find("--clean-ratio 0.001 leaves no clean images"), std::string::npos)
      << none.output;
  CommandResult few =
      run_nad("strip" + data + model + " --clean-ratio 0.5 --out " + (dir / "few").string());
  EXPECT_EQ(few.exit_code, 2);
  EXPECT_NE(few.output.find("fewer than --overlays 100"), std::string::npos) << few.output;

  const auto threshold = (dir / "s" / "strip.json").string();
  ASSERT_EQ(run_nad("strip" + data + model + " --clean-ratio 0.5 --overlays 5 --quiet --out " +
                    (dir / "s").string())
                .exit_code,
            0);
  io::write_png(dir / "one" / "a.png", torch::full({16, 16, 1}, 128, torch::kUInt8));
  const std::string gate =
      "strip --threshold-file " + threshold + " --out " + (dir / "gate").string() + " --images ";
  const std::string one = (dir / "one").string();

  // A threshold file made with another model (trained with another seed) is refused, naming it;
  // nothing is written.
  CommandResult other = run_nad(gate + one + " --model " + (dir / "m1" / "model.pt").string());
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.output.find(threshold), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("calibrated on another model (the weights differ)"),
            std::string::npos)
      << other.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "gate"));
  // The same weights exported as a bare PyTorch state_dict are the same model.
  ASSERT_EQ(run_nad("export" + model + " --out " + (dir / "bare.pt").string()).exit_code, 0);
  CommandResult exported = run_nad(gate + one + " --model " + (dir / "bare.pt").string());
  EXPECT_TRUE(exported.exit_code == 0 || exported.exit_code == 1) << exported.output;
  EXPECT_EQ(count_lines(dir / "gate" / "flags.csv"), 2);

  // Images: an empty folder, a missing one, an image of the wrong size.
  std::filesystem::create_directories(dir / "empty");
  CommandResult empty = run_nad(gate + (dir / "empty").string() + model);
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.output.find("--images " + (dir / "empty").string() + " holds no images"),
            std::string::npos)
      << empty.output;
  CommandResult missing = run_nad(gate + (dir / "nowhere").string() + model);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("nowhere: no such folder"), std::string::npos) << missing.output;
  io::write_png(dir / "big" / "b.png", torch::zeros({20, 20, 1}, torch::kUInt8));
  CommandResult big = run_nad(gate + (dir / "big").string() + model);
  EXPECT_EQ(big.exit_code, 2);
  EXPECT_NE(big.output.find("b.png' is 20x20 pixels"), std::string::npos) << big.output;

  // The threshold file: missing, not one of nad's, or the gate writing over its folder.
  CommandResult no_file = run_nad("strip --threshold-file " + (dir / "no.json").string() +
                                  " --images " + one + model + " --out " + (dir / "g2").string());
  EXPECT_EQ(no_file.exit_code, 2);
  EXPECT_NE(no_file.output.find("no.json: no such file"), std::string::npos) << no_file.output;
  write_bytes(dir / "other.json", std::string("{\"threshold\": 1}"));
  CommandResult foreign = run_nad("strip --threshold-file " + (dir / "other.json").string() +
                                  " --images " + one + model + " --out " + (dir / "g3").string());
  EXPECT_EQ(foreign.exit_code, 2);
  EXPECT_NE(foreign.output.find("not a strip.json"), std::string::npos) << foreign.output;
  CommandResult over = run_nad("strip --threshold-file " + threshold + " --images " + one + model +
                               " --out " + (dir / "s").string());
  EXPECT_EQ(over.exit_code, 2);
  EXPECT_NE(over.output.find("is the folder of --threshold-file"), std::string::npos)
      << over.output;
  CommandResult half = run_nad("strip --images " + one + model + " --out " + (dir / "g4").string());
  EXPECT_EQ(half.exit_code, 2);
  EXPECT_NE(half.output.find("--images needs --threshold-file"), std::string::npos) << half.output;
}

}  // namespace
}  // namespace nad::test
