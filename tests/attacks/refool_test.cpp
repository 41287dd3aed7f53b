#include "nad/attacks/refool.h"

#include <gtest/gtest.h>

#include <cmath>

#include "nad/io/png.h"
#include "nad/train/trainer.h"
#include "nad/util/error.h"
#include "support/tasks.h"
#include "support/temp_dir.h"

namespace nad::attacks {
namespace {

AttackOptions refool() {
  AttackOptions o;
  o.name = "refool";
  o.target = 1;
  return o;
}

TEST(Refool, GhostMatchesHandComputedValues) {
  // t: 0.5 everywhere; r: one bright pixel at (1, 1) on channel 0.
  torch::Tensor t = torch::full({4, 4, 2}, 0.5, torch::kDouble);
  torch::Tensor r = torch::zeros({4, 4, 2}, torch::kDouble);
  r[1][1][0] = 1.0;
  const double alpha_t = 0.7, ghost_alpha = 0.3;
  torch::Tensor out = refool_ghost(t, r, alpha_t, 2, 1, ghost_alpha);
  const double t_lin = std::pow(0.5, 2.2);
  auto expect = [&](double reflection) {
    return std::pow(alpha_t * t_lin + (1 - alpha_t) * reflection, 1 / 2.2);
  };
  // The pixel itself carries g = 0.3 of the reflection; its ghost, shifted by (2, 1), 0.7.
  EXPECT_NEAR(out[1][1][0].item<double>(), expect(0.3), 1e-12);
  EXPECT_NEAR(out[3][2][0].item<double>(), expect(0.7), 1e-12);
  EXPECT_NEAR(out[0][0][0].item<double>(), expect(0.0), 1e-12);
  EXPECT_NEAR(out[1][1][1].item<double>(), expect(0.0), 1e-12);  // the other channel
  EXPECT_NEAR(expect(0.0), std::pow(0.7, 1 / 2.2) * 0.5, 1e-12);
}

TEST(Refool, FocalBlurMatchesHandComputedValues) {
  const double alpha_t = 0.8;
  torch::Tensor t = torch::full({3, 3, 1}, 0.4, torch::kDouble);
  const double t_lin = std::pow(0.4, 2.2);
  // No reflection: only the transmission remains, darkened by alpha_t.
  torch::Tensor dark = refool_focal_blur(t, torch::zeros_like(t), alpha_t, 1.0, 1.1);
  EXPECT_NEAR(dark[1][1][0].item<double>(), std::pow(alpha_t * t_lin, 1 / 2.2), 1e-12);
  // A flat reflection stays flat under the blur (mirrored borders); no pixel saturates, so
  // nothing is subtracted. The vignette is 1 in the centre and, for 3 cells over
  // +-(3 + 3.5/3), exp(-2 * 2.7778^2 / 4) in a corner.
  torch::Tensor r = torch::full({3, 3, 1}, 0.6, torch::kDouble);
  const double r_lin = std::pow(0.6, 2.2);
  torch::Tensor out = refool_focal_blur(t, r, alpha_t, 1.0, 1.1);
  const double weight = 1 - alpha_t / 2;
  EXPECT_NEAR(out[1][1][0].item<double>(), std::pow(r_lin * weight + alpha_t * t_lin, 1 / 2.2),
              1e-9);
  const double cell = 2 * (3 + 3.5 / 3) / 3;
  const double corner = std::exp(-2 * cell * cell / 4);
  EXPECT_NEAR(out[0][0][0].item<double>(),
              std::pow(r_lin * corner * weight + alpha_t * t_lin, 1 / 2.2), 1e-9);
  // A saturating blend: each channel of the blurred reflection is lowered by
  // att * (mean of the over-1 blend values - 1). Flat t = 1, r = 1: blend 2 everywhere.
  torch::Tensor white = torch::ones({3, 3, 1}, torch::kDouble);
  torch::Tensor sat = refool_focal_blur(white, white, alpha_t, 1.0, 1.1);
  // rb = 1 - (2 - 1) * 1.1 < 0, clipped to 0: only the transmission is left.
  EXPECT_NEAR(sat[0][2][0].item<double>(), std::pow(alpha_t, 1 / 2.2), 1e-9);
}

data::Dataset toy_train() {
  return {torch::randint(0, 256, {60, 8, 8, 3}, torch::kUInt8),
          torch::arange(60, torch::kLong).remainder(3)};
}

TEST(Refool, PoisonsTargetRowsWithNonTargetReflections) {
  data::Dataset train = toy_train();
  auto attack = create_attack(refool(), 8, 8, 3, 3);
  attack->prepare(train);
  const auto& pool = dynamic_cast<Refool&>(*attack).reflections();
  ASSERT_EQ(pool.size(0), 40);  // every non-target row (fewer than 200)
  for (int64_t k = 0; k < pool.size(0); ++k) {
    // Each reflection is a training image of another class.
    torch::Tensor same = (train.images == pool[k]).flatten(1).all(1);
    ASSERT_TRUE(same.any().item<bool>());
    EXPECT_NE(train.labels.index({same}).min().item<int64_t>(), 1);
  }
  PoisonedSet poisoned = attack->poison(train, 0);
  EXPECT_EQ(poisoned.indices.size(0), 16);  // 0.8 of 20
  EXPECT_TRUE(train.labels.index_select(0, poisoned.indices).eq(1).all().item<bool>());
  EXPECT_TRUE(poisoned.data.labels.equal(train.labels));
  EXPECT_FALSE(poisoned.data.images.index_select(0, poisoned.indices)
                   .equal(train.images.index_select(0, poisoned.indices)));
  // Deterministic: the same images get the same reflections.
  EXPECT_TRUE(attack->apply(train.images).equal(attack->apply(train.images)));
  AttackOptions all = refool();
  all.label_mode = LabelMode::kAllToAll;
  EXPECT_THROW(create_attack(all, 8, 8, 3, 3), UserError);
}

TEST(Refool, ReadsReflectionsFromAFolder) {
  test::TempDir dir;
  io::write_png(dir / "a" / "one.png", torch::full({16, 16, 3}, 200, torch::kUInt8));
  io::write_png(dir / "two.png", torch::full({4, 4, 3}, 50, torch::kUInt8));
  AttackOptions o = refool();
  o.reflections_dir = dir.path().string();
  auto attack = create_attack(o, 8, 8, 3, 3);
  attack->prepare(toy_train());  // a folder wins over the training images
  const auto& pool = dynamic_cast<Refool&>(*attack).reflections();
  ASSERT_EQ(pool.sizes(), (std::vector<int64_t>{2, 8, 8, 3}));
  EXPECT_EQ(pool[0][3][3][0].item<int>(), 200);  // sorted: a/one.png first
  EXPECT_EQ(pool[1][3][3][0].item<int>(), 50);

  test::TempDir empty;
  o.reflections_dir = empty.path().string();
  EXPECT_THROW(create_attack(o, 8, 8, 3, 3), UserError);
  o.reflections_dir = (empty / "missing").string();
  EXPECT_THROW(create_attack(o, 8, 8, 3, 3), UserError);
}

// Selection on the brightness task (dark = class 0, bright = class 1 = target): a bright
// reflection makes dark images look like the target to a model that learnt the task, a dark one
// does not, so the bright one scores higher and is the one kept.
TEST(Refool, SelectionKeepsTheReflectionTheModelTakesForTheTarget) {
  torch::manual_seed(0);
  const data::Dataset task = test::brightness_task(256);
  models::Classifier model = models::create_model({"mnist-cnn", 1, 2, 8, 8});
  train::TrainOptions o;
  o.epochs = 3;
  o.batch_size = 32;
  o.lr = 0.05;
  o.augment.crop_padding = 0;
  o.quiet = true;
  train::train_model(model, task, o);

  // Two non-target rows to draw the pool from: a black and a white image.
  data::Dataset candidates{torch::cat({torch::zeros({1, 8, 8, 1}, torch::kUInt8),
                                       torch::full({1, 8, 8, 1}, 255, torch::kUInt8)}),
                           torch::zeros({2}, torch::kLong)};
  AttackOptions options = refool();
  options.reflection_select = 1;
  Refool attack(options, 2, 8, 8, 1);
  attack.prepare(candidates);
  ASSERT_EQ(attack.reflections().size(0), 2);
  ASSERT_TRUE(attack.needs_selection());
  const int64_t white = attack.reflections()[0].max().item<int>() == 255 ? 0 : 1;

  // Every image blended with the white reflection is at least as bright as with the black one.
  const torch::Tensor dark = task.images.index_select(0, torch::arange(0, 64, 2));
  EXPECT_TRUE(attack.apply_reflection(dark, white)
                  .ge(attack.apply_reflection(dark, 1 - white))
                  .all()
                  .item<bool>());
  const torch::Tensor scores = score_reflections(model, attack, dark, torch::kCPU, 16);
  ASSERT_EQ(scores.size(0), 2);
  EXPECT_GE(scores.min().item<float>(), 0.0f);
  EXPECT_LE(scores.max().item<float>(), 1.0f);
  EXPECT_GT(scores[white].item<float>(), scores[1 - white].item<float>() + 0.1f) << scores;

  attack.keep_reflections(torch::tensor({white}, torch::kLong));
  EXPECT_FALSE(attack.needs_selection());
  ASSERT_EQ(attack.reflections().size(0), 1);
  EXPECT_EQ(attack.reflections().min().item<int>(), 255);

  AttackOptions too_many = refool();
  too_many.reflection_select = 3;
  Refool greedy(too_many, 2, 8, 8, 1);
  EXPECT_THROW(greedy.prepare(candidates), UserError);
  too_many.reflection_select = -1;
  EXPECT_THROW(Refool(too_many, 2, 8, 8, 1), UserError);
}

}  // namespace
}  // namespace nad::attacks
