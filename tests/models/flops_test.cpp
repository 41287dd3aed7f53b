// FLOP counts against hand-computed values.
#include "nad/models/flops.h"

#include <gtest/gtest.h>

namespace nad::models {
namespace {

TEST(Flops, MnistCnnMatchesHandCount) {
  ModelSpec spec{"mnist-cnn", 1, 4, 16, 16};
  Classifier model = create_model(spec);
  const ForwardCost cost = measure_forward_cost(model, torch::zeros({2, 1, 16, 16}));
  ASSERT_EQ(cost.convolutions.size(), 2u);
  // conv1: 1 -> 32 channels, 3 x 3, 16 x 16 outputs, batch 2: 2 FLOPs x 9 x 32 x 256 x 2.
  EXPECT_DOUBLE_EQ(cost.convolutions[0].flops, 2.0 * 9 * 32 * 256 * 2);
  // conv2 after 2 x 2 pooling: 32 -> 64, 8 x 8 outputs.
  EXPECT_DOUBLE_EQ(cost.convolutions[1].flops, 2.0 * 32 * 9 * 64 * 64 * 2);
  EXPECT_EQ(cost.convolutions[1].input, (std::vector<int64_t>{2, 32, 8, 8}));
  EXPECT_EQ(cost.convolutions[1].weight, (std::vector<int64_t>{64, 32, 3, 3}));
  // fc1: 64 x 4 x 4 -> 128, fc2: 128 -> 4.
  EXPECT_DOUBLE_EQ(cost.linear_flops, 2.0 * 2 * (1024 * 128 + 128 * 4));
  EXPECT_DOUBLE_EQ(cost.total(),
                   cost.convolutions[0].flops + cost.convolutions[1].flops + cost.linear_flops);
  EXPECT_TRUE(cost.convolutions[0].same_shape(cost.convolutions[0]));
  EXPECT_FALSE(cost.convolutions[0].same_shape(cost.convolutions[1]));
}

TEST(Flops, WideResNet16x1CountsStridedAndShortcutConvolutions) {
  ModelSpec spec{"wrn-16-1", 3, 10, 32, 32};
  Classifier model = create_model(spec);
  const ForwardCost cost = measure_forward_cost(model, torch::zeros({1, 3, 32, 32}));
  // Stem 3 -> 16 at 32 x 32; per group two blocks of two 3 x 3 convolutions (the first of
  // groups 2 and 3 strided) and one 1 x 1 shortcut where the width changes.
  auto conv = [](double cin, double cout, double k, double side) {
    return 2.0 * cin * k * k * cout * side * side;
  };
  const double expected = conv(3, 16, 3, 32) +       // stem
                          conv(16, 16, 3, 32) * 4 +  // group 1
                          conv(16, 32, 3, 16) + conv(32, 32, 3, 16) * 3 + conv(16, 32, 1, 16) +
                          conv(32, 64, 3, 8) + conv(64, 64, 3, 8) * 3 + conv(32, 64, 1, 8);
  EXPECT_EQ(cost.convolutions.size(), 15u);
  EXPECT_DOUBLE_EQ(cost.convolution_flops, expected);
  EXPECT_DOUBLE_EQ(cost.linear_flops, 2.0 * 64 * 10);
}

}  // namespace
}  // namespace nad::models
