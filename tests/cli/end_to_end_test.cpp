// Runs the real nad binary on small generated data: a backdoor is learnt, then erased.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

TEST(EndToEnd, BackdoorIsLearntThenErasedByNad) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 3000, 600, 16, 4, 11);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  const std::string attack = " --attack badnets --trigger grid --target 0 --poison-rate 0.2";

  CommandResult trained = run_nad("train" + data + attack +
                                  " --arch mnist-cnn --epochs 8 --crop-padding 0 --seed 1 --out " +
                                  (dir / "bd").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const nlohmann::json bd = read_json(dir / "bd" / "summary.json");
  EXPECT_GT(bd["clean_acc"].get<double>(), 90.0) << trained.output;
  EXPECT_GT(bd["asr"].get<double>(), 90.0) << trained.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "bd" / "model.pt"));
  EXPECT_EQ(count_lines(dir / "bd" / "poisoned_indices.txt"), 600);
  EXPECT_EQ(count_lines(dir / "bd" / "metrics.csv"), 1 + 8);
  EXPECT_EQ(read_json(dir / "bd" / "config.json")["common"]["seed"], 1);

  CommandResult evaluated =
      run_nad("eval" + data + attack + " --model " + (dir / "bd" / "model.pt").string() +
              " --out " + (dir / "eval").string());
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  EXPECT_DOUBLE_EQ(read_json(dir / "eval" / "summary.json")["asr"].get<double>(),
                   bd["asr"].get<double>());

  CommandResult erased =
      run_nad("erase" + data + attack + " --model " + (dir / "bd" / "model.pt").string() +
              " --clean-ratio 0.2 --seed 2 --out " + (dir / "nad").string());
  ASSERT_EQ(erased.exit_code, 0) << erased.output;
  const nlohmann::json nad = read_json(dir / "nad" / "summary.json");
  EXPECT_GT(nad["before"]["asr"].get<double>(), 90.0);
  EXPECT_LT(nad["after"]["asr"].get<double>(), 10.0) << erased.output;
  EXPECT_GT(nad["after"]["clean_acc"].get<double>(), nad["before"]["clean_acc"].get<double>() - 5.0)
      << erased.output;
  EXPECT_EQ(nad["clean_subset"]["size"], 600);
  EXPECT_EQ(count_lines(dir / "nad" / "clean_indices.txt"), 600);
  for (const char* file : {"model.pt", "teacher.pt", "metrics.csv", "config.json", "report.md"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / "nad" / file)) << file;
  }

  // The erased model evaluates to the same numbers when loaded back.
  expect_eval_gives_after(data + attack, dir / "nad", dir / "eval2");
}

TEST(EndToEnd, SameSeedSameNumbers) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 600, 200, 16, 4, 3);
  const std::string args = "train --dataset mnist --data-dir " + (dir / "data").string() +
                           " --arch mnist-cnn --epochs 2 --attack blend --seed 9 --quiet --out ";
  ASSERT_EQ(run_nad(args + (dir / "a").string()).exit_code, 0);
  ASSERT_EQ(run_nad(args + (dir / "b").string()).exit_code, 0);
  const auto a = read_json(dir / "a" / "summary.json"), b = read_json(dir / "b" / "summary.json");
  EXPECT_EQ(a["clean_acc"], b["clean_acc"]);
  EXPECT_EQ(a["asr"], b["asr"]);
}

TEST(EndToEnd, FixedRateAndReferenceScheduleNeedNoHoldOut) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 400, 100, 16, 4, 5);
  const std::string data = " --dataset mnist --data-dir " + (dir / "data").string();
  ASSERT_EQ(
      run_nad("train" + data + " --arch mnist-cnn --epochs 1 --quiet --out " + (dir / "m").string())
          .exit_code,
      0);
  const std::string model = " --model " + (dir / "m" / "model.pt").string();
  CommandResult fixed =
      run_nad("finetune" + data + model + " --clean-ratio 0.2 --lr 0.01 --epochs 1 --out " +
              (dir / "ft").string());
  ASSERT_EQ(fixed.exit_code, 0) << fixed.output;
  const nlohmann::json ft = read_json(dir / "ft" / "summary.json");
  EXPECT_EQ(ft["clean_subset"]["validation_size"], 0);  // a fixed rate trains on all 80 images
  EXPECT_EQ(ft["clean_subset"]["train_size"], 80);
  EXPECT_DOUBLE_EQ(ft["lr"].get<double>(), 0.01);
  CommandResult reference =
      run_nad("erase" + data + model +
              " --clean-ratio 0.2 --schedule reference --teacher-epochs 1 --epochs 3 --out " +
              (dir / "ref").string());
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const nlohmann::json ref = read_json(dir / "ref" / "summary.json");
  EXPECT_DOUBLE_EQ(ref["lr"]["student"].get<double>(), 0.1);
  EXPECT_EQ(count_lines(dir / "ref" / "metrics.csv"),
            1 + 1 + 1 + 3);  // header, before, teacher, student
  // The reference's whole recipe: its Cutout (one zero-filled 3 x 3 hole) comes with it.
  const nlohmann::json ref_augment = read_json(dir / "ref" / "config.json")["train"]["augment"];
  EXPECT_EQ(ref_augment["cutout_holes"], 1);
  EXPECT_EQ(ref_augment["cutout_length"], 3);
  EXPECT_EQ(ref_augment["cutout_fill"], "zero");
  // nad's default stays the noise holes, and a given Cutout wins over the recipe's.
  EXPECT_EQ(read_json(dir / "ft" / "config.json")["train"]["augment"]["cutout_fill"], "noise");
  CommandResult given = run_nad("finetune" + data + model +
                                " --clean-ratio 0.2 --schedule reference --epochs 1 --cutout 2 "
                                "--out " +
                                (dir / "ref-cutout").string());
  ASSERT_EQ(given.exit_code, 0) << given.output;
  const nlohmann::json given_augment =
      read_json(dir / "ref-cutout" / "config.json")["train"]["augment"];
  EXPECT_EQ(given_augment["cutout_holes"], 2);
  EXPECT_EQ(given_augment["cutout_fill"], "noise");
}

TEST(EndToEnd, UserMistakesExitWithCode2AndOneClearMessage) {
  TempDir dir;
  CommandResult missing = run_nad("eval --dataset mnist --data-dir " + (dir / "nowhere").string() +
                                  " --model m.pt --out " + (dir / "o").string());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("nowhere"), std::string::npos) << missing.output;

  CommandResult unknown = run_nad("train --dataset mnist --bogus 1 --out x");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("--bogus"), std::string::npos) << unknown.output;

  CommandResult bad_dataset = run_nad("train --dataset imagenet --out x");
  EXPECT_EQ(bad_dataset.exit_code, 2);

  // A checkpoint for 16x16 inputs against 8x8 data names the option and the file.
  write_synthetic_idx(dir / "d16", 100, 40, 16, 4, 1);
  write_synthetic_idx(dir / "d8", 100, 40, 8, 4, 1);
  ASSERT_EQ(run_nad("train --dataset mnist --data-dir " + (dir / "d16").string() +
                    " --arch mnist-cnn --epochs 1 --quiet --out " + (dir / "m").string())
                .exit_code,
            0);
  CommandResult mismatch =
      run_nad("eval --dataset mnist --data-dir " + (dir / "d8").string() + " --model " +
              (dir / "m" / "model.pt").string() + " --out " + (dir / "e").string());
  EXPECT_EQ(mismatch.exit_code, 2);
  EXPECT_NE(mismatch.output.find("--model"), std::string::npos) << mismatch.output;
  EXPECT_NE(mismatch.output.find("model.pt"), std::string::npos) << mismatch.output;

  CommandResult bad_lr =
      run_nad("erase --dataset mnist --data-dir " + (dir / "d16").string() + " --model " +
              (dir / "m" / "model.pt").string() + " --lr fast --out " + (dir / "x").string());
  EXPECT_EQ(bad_lr.exit_code, 2);
  EXPECT_NE(bad_lr.output.find("--lr"), std::string::npos) << bad_lr.output;
}

}  // namespace
}  // namespace nad::test
