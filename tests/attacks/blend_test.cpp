#include "nad/attacks/blend.h"

#include <gtest/gtest.h>

namespace nad::attacks {
namespace {

TEST(Blend, FollowsTheFormulaWithRounding) {
  AttackOptions o;
  o.name = "blend";
  o.alpha = 0.2;
  Blend blend(o, 10, 4, 4, 3);
  torch::Tensor images = torch::randint(0, 256, {3, 4, 4, 3}, torch::kUInt8);
  torch::Tensor out = blend.apply(images);
  const auto in = images.accessor<uint8_t, 4>();
  const auto pattern = blend.pattern().accessor<uint8_t, 3>();
  const auto result = out.accessor<uint8_t, 4>();
  for (int n = 0; n < 3; ++n)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x)
        for (int c = 0; c < 3; ++c) {
          const float expected = std::nearbyint(0.8f * in[n][y][x][c] + 0.2f * pattern[y][x][c]);
          EXPECT_NEAR(result[n][y][x][c], expected, 0.51);
        }
  // Hand-computed corner cases: black image gives round(0.2 t); alpha 0 is the identity.
  torch::Tensor black = blend.apply(torch::zeros({1, 4, 4, 3}, torch::kUInt8));
  EXPECT_EQ(black[0][0][0][0].item<int>(),
            static_cast<int>(std::nearbyint(0.2 * pattern[0][0][0])));
  o.alpha = 0;
  EXPECT_TRUE(Blend(o, 10, 4, 4, 3).apply(images).equal(images));
}

TEST(Blend, PatternIsFixedBySeedNotRun) {
  AttackOptions o;
  o.name = "blend";
  Blend a(o, 10, 8, 8, 3), b(o, 10, 8, 8, 3);
  EXPECT_TRUE(a.pattern().equal(b.pattern()));
  o.pattern_seed = 1;
  EXPECT_FALSE(Blend(o, 10, 8, 8, 3).pattern().equal(a.pattern()));
  // Uniform noise over the whole byte range.
  EXPECT_GT(a.pattern().max().item<int>(), 200);
  EXPECT_LT(a.pattern().min().item<int>(), 50);
}

}  // namespace
}  // namespace nad::attacks
