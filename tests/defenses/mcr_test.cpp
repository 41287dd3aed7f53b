#include "nad/defenses/mcr.h"

#include <gtest/gtest.h>

#include "nad/data/augment.h"

namespace nad::defenses {
namespace {

const models::ModelSpec kSpec{"wrn-10-1", 3, 4, 8, 8};

models::Classifier model_with_seed(uint64_t seed) {
  torch::manual_seed(seed);
  models::Classifier model = models::create_model(kSpec);
  // Distinct BatchNorm statistics at each end, to see which end's are used.
  torch::NoGradGuard no_grad;
  for (auto& b : model->buffers()) {
    if (b.is_floating_point()) b.add_(torch::rand_like(b));
  }
  return model;
}

CurveEnds random_curve(const models::Classifier& start, const models::Classifier& end) {
  CurveEnds curve;
  curve.start = parameter_state(start);
  curve.end = parameter_state(end);
  for (const auto& p : curve.start) curve.bend.push_back(torch::randn_like(p));
  return curve;
}

TEST(Mcr, CurveReturnsTheEndpointsExactly) {
  models::Classifier start = model_with_seed(1), end = model_with_seed(2);
  CurveEnds curve = random_curve(start, end);
  torch::Tensor images = torch::randint(0, 256, {6, 8, 8, 3}, torch::kUInt8);
  torch::Tensor inputs = data::to_input(images);
  for (const auto& [t, reference] : {std::pair{0.0, start}, std::pair{1.0, end}}) {
    models::Classifier at = curve_model(start, end, kSpec, curve, t, images, torch::kCPU);
    auto p = at->parameters();
    auto q = reference->parameters();
    for (size_t i = 0; i < p.size(); ++i) ASSERT_TRUE(p[i].equal(q[i])) << t << " " << i;
    auto b = at->buffers();
    auto c = reference->buffers();
    for (size_t i = 0; i < b.size(); ++i) ASSERT_TRUE(b[i].equal(c[i])) << t << " " << i;
    torch::NoGradGuard no_grad;
    reference->eval();
    EXPECT_TRUE(at->forward(inputs).logits.equal(reference->forward(inputs).logits)) << t;
  }
  // Inside: (1 - t)^2 start + 2 t (1 - t) bend + t^2 end; at t = 0.5: 1/4, 1/2, 1/4.
  models::Classifier middle = models::clone_model(start, kSpec);
  set_curve_point(middle, curve, 0.5);
  auto p = middle->parameters();
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_TRUE(torch::allclose(
        p[i], 0.25 * curve.start[i] + 0.5 * curve.bend[i] + 0.25 * curve.end[i], 1e-6, 1e-7));
  }
}

TEST(Mcr, BatchNormIsRecomputedOnTheData) {
  models::Classifier model = model_with_seed(4);
  torch::Tensor images = torch::randint(0, 256, {40, 8, 8, 3}, torch::kUInt8);
  update_batchnorm(model, images, 500, torch::kCPU);
  // The first BatchNorm reads conv1's output: its running mean is that output's channel mean.
  auto p = model->named_parameters();
  auto b = model->named_buffers();
  torch::NoGradGuard no_grad;
  torch::Tensor x =
      torch::conv2d(data::to_input(images), p["conv1.weight"], {}, 1, torch::IntArrayRef{1});
  EXPECT_TRUE(torch::allclose(b["block1.layer.0.bn1.running_mean"], x.mean({0, 2, 3}), 1e-4, 1e-5));
  EXPECT_FALSE(model->is_training());
}

TEST(Mcr, TrainingMovesOnlyTheBend) {
  models::Classifier start = model_with_seed(5), end = model_with_seed(6);
  const auto start_before = parameter_state(start);
  CleanData clean;
  clean.train = {torch::randint(0, 256, {24, 8, 8, 3}, torch::kUInt8),
                 torch::randint(0, 4, {24}, torch::kLong)};
  McrOptions options;
  options.train.epochs = 2;
  options.train.batch_size = 8;
  options.train.lr = 0.05;
  options.train.quiet = true;
  CurveEnds curve;
  auto records = train_curve(start, end, kSpec, clean, options, curve);
  ASSERT_EQ(records.size(), 2u);
  const auto start_after = parameter_state(start);
  bool bend_moved = false;
  for (size_t i = 0; i < curve.bend.size(); ++i) {
    EXPECT_TRUE(start_after[i].equal(start_before[i]));
    EXPECT_TRUE(curve.start[i].equal(start_before[i]));
    const torch::Tensor midpoint = (curve.start[i] + curve.end[i]) / 2;
    bend_moved = bend_moved || !torch::allclose(curve.bend[i], midpoint);
  }
  EXPECT_TRUE(bend_moved);
}

}  // namespace
}  // namespace nad::defenses
