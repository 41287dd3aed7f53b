#include "nad/defenses/attention.h"

#include <gtest/gtest.h>

#include "nad/util/error.h"

namespace nad::defenses {
namespace {

TEST(Attention, MapMatchesHandComputedValues) {
  // One sample, two channels, 1 x 2 spatial: F0 = [1, -2], F1 = [3, 0].
  torch::Tensor f = torch::tensor({1.0f, -2.0f, 3.0f, 0.0f}).view({1, 2, 1, 2});
  // p = 2: sum |F|^2 = [1 + 9, 4 + 0] = [10, 4]; norm = sqrt(116).
  torch::Tensor a = attention_map(f, 2.0);
  ASSERT_EQ(a.sizes(), torch::IntArrayRef({1, 1, 1, 2}));
  const double norm = std::sqrt(116.0) + 1e-6;
  EXPECT_NEAR(a[0][0][0][0].item<double>(), 10 / norm, 1e-6);
  EXPECT_NEAR(a[0][0][0][1].item<double>(), 4 / norm, 1e-6);
  // sum: [4, 2] / sqrt(20).
  torch::Tensor s = attention_map(f, 2.0, AttentionKind::kSum);
  EXPECT_NEAR(s[0][0][0][0].item<double>(), 4 / (std::sqrt(20.0) + 1e-6), 1e-6);
  // mean-p: [5, 2] / sqrt(29).
  torch::Tensor m = attention_map(f, 2.0, AttentionKind::kMeanPower);
  EXPECT_NEAR(m[0][0][0][1].item<double>(), 2 / (std::sqrt(29.0) + 1e-6), 1e-6);
  // p = 1 is sum |F|.
  EXPECT_TRUE(torch::allclose(attention_map(f, 1.0), s));
}

TEST(Attention, EachSampleIsNormalisedSeparately) {
  torch::Tensor f = torch::randn({3, 4, 5, 5});
  f[1] *= 100;
  torch::Tensor a = attention_map(f);
  torch::Tensor norms = a.flatten(1).norm(2, {1});
  EXPECT_TRUE(torch::allclose(norms, torch::ones({3}), 1e-4, 1e-4));
}

TEST(Attention, LossIsMeanSquaredErrorOfMaps) {
  torch::Tensor s = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f}).view({1, 1, 2, 2});
  torch::Tensor t = torch::tensor({0.0f, 1.0f, 0.0f, 0.0f}).view({1, 1, 2, 2});
  // Maps are one-hot (norm 1): squared differences 1, 1, 0, 0 over 4 elements.
  EXPECT_NEAR(attention_loss(s, t).item<double>(), 0.5, 1e-5);
  EXPECT_NEAR(attention_loss(s, s * 7).item<double>(), 0.0, 1e-9);
}

TEST(Attention, PooledOneByOneMapIsConstant) {
  // Why the groups never include a pooled 1x1 output: its normalised map is always ~1.
  torch::Tensor a = torch::randn({2, 8, 1, 1}), b = torch::randn({2, 8, 1, 1});
  EXPECT_NEAR(attention_loss(a, b).item<double>(), 0.0, 1e-9);
}

TEST(Attention, ParsesKinds) {
  EXPECT_EQ(parse_attention_kind("sum"), AttentionKind::kSum);
  EXPECT_EQ(parse_attention_kind("mean-p"), AttentionKind::kMeanPower);
  EXPECT_THROW(parse_attention_kind("max"), UserError);
}

}  // namespace
}  // namespace nad::defenses
