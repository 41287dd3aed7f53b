// --precision auto: the rule on given timings, the per-machine cache, and the CLI's record.
#include "nad/util/precision_choice.h"

#include <gtest/gtest.h>

#include <fstream>

#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad {
namespace {

TEST(PrecisionChoice, Bf16OnlyWhenClearlyFasterAndTheLossKept) {
  EXPECT_EQ(decide_precision({100, 50, 0.001}).precision, Precision::kBf16);
  // Slower, or not faster by the margin: fp32, which is exact.
  const PrecisionChoice slower = decide_precision({100, 140, 0.001});
  EXPECT_EQ(slower.precision, Precision::kFp32);
  EXPECT_NE(slower.reason.find("slower"), std::string::npos) << slower.reason;
  EXPECT_EQ(decide_precision({100, 95, 0.001}).precision, Precision::kFp32);
  // Faster but changing the loss: fp32.
  const PrecisionChoice wrong = decide_precision({100, 40, 0.05});
  EXPECT_EQ(wrong.precision, Precision::kFp32);
  EXPECT_NE(wrong.reason.find("loss"), std::string::npos) << wrong.reason;
  EXPECT_EQ(decide_precision({100, 50, 0.001}).to_json()["chosen"], "bf16");
}

TEST(PrecisionChoice, CacheKeepsOneMeasurementPerMachine) {
  test::TempDir dir;
  const auto cache = dir / "nad" / "precision.json";
  EXPECT_FALSE(cached_timing(cache, "machine A").has_value());
  cache_timing(cache, "machine A", {10, 5, 0.003});
  cache_timing(cache, "machine B", {10, 20, 0.001});
  const auto a = cached_timing(cache, "machine A");
  ASSERT_TRUE(a.has_value());
  EXPECT_DOUBLE_EQ(a->fp32_ms, 10);
  EXPECT_DOUBLE_EQ(a->bf16_ms, 5);
  EXPECT_DOUBLE_EQ(a->loss_difference, 0.003);
  EXPECT_DOUBLE_EQ(cached_timing(cache, "machine B")->bf16_ms, 20);
  EXPECT_FALSE(cached_timing(cache, "machine C").has_value());
  // A damaged cache counts as empty and is replaced by the next measurement.
  std::ofstream(cache) << "{not json";
  EXPECT_FALSE(cached_timing(cache, "machine A").has_value());
  cache_timing(cache, "machine A", {8, 4, 0.002});
  EXPECT_DOUBLE_EQ(cached_timing(cache, "machine A")->fp32_ms, 8);
}

TEST(PrecisionChoice, MeasuresBothPrecisionsOnTheSameStep) {
  const PrecisionTiming timing = measure_precisions(torch::kCPU);
  EXPECT_GT(timing.fp32_ms, 0);
  EXPECT_GT(timing.bf16_ms, 0);
  // bf16 keeps about three significant digits: the loss moves by far less than a percent.
  EXPECT_LT(timing.loss_difference, 0.01);
  EXPECT_EQ(compute_options().precision, Precision::kFp32);  // restored
}

TEST(PrecisionChoice, AutoIsRecordedInConfigAndCachedPerMachine) {
  test::TempDir dir;
  test::write_synthetic_idx(dir / "data", 200, 100, 16, 4, 5);
  const std::string run = "XDG_CACHE_HOME=" + (dir / "cache").string() + " " NAD_BINARY +
                          std::string(" eval --dataset mnist --data-dir ") +
                          (dir / "data").string() + " --arch mnist-cnn --precision auto --out ";
  // eval needs a model: train one for an epoch in fp32.
  const test::CommandResult trained =
      test::run_nad("train --dataset mnist --data-dir " + (dir / "data").string() +
                    " --arch mnist-cnn --epochs 1 --quiet --out " + (dir / "m").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const std::string model = " --model " + (dir / "m" / "model.pt").string();
  const test::CommandResult first = test::run_shell(run + (dir / "a").string() + model);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const nlohmann::json choice = test::read_json(dir / "a" / "config.json")["precision_auto"];
  ASSERT_TRUE(choice.is_object()) << first.output;
  EXPECT_TRUE(choice["chosen"] == "fp32" || choice["chosen"] == "bf16");
  EXPECT_FALSE(choice["reason"].get<std::string>().empty());
  EXPECT_NE(first.output.find("--precision auto"), std::string::npos) << first.output;
  if (!cpu_has_native_bf16()) {
    EXPECT_FALSE(choice.contains("fp32_step_ms"));  // nothing to measure
    return;
  }
  EXPECT_FALSE(choice["from_cache"].get<bool>());
  EXPECT_TRUE(std::filesystem::exists(dir / "cache" / "nad" / "precision.json"));
  const test::CommandResult second = test::run_shell(run + (dir / "b").string() + model);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  const nlohmann::json again = test::read_json(dir / "b" / "config.json")["precision_auto"];
  EXPECT_TRUE(again["from_cache"].get<bool>());
  EXPECT_EQ(again["chosen"], choice["chosen"]);
  EXPECT_EQ(again["fp32_step_ms"], choice["fp32_step_ms"]);
}

}  // namespace
}  // namespace nad
