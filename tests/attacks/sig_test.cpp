#include "nad/attacks/sig.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "nad/util/error.h"

namespace nad::attacks {
namespace {

AttackOptions sig() {
  AttackOptions o;
  o.name = "sig";
  return o;
}

TEST(Sig, AddsTheSinusoidOnEveryChannel) {
  Sig attack(sig(), 10, 4, 20);
  torch::Tensor images = torch::randint(30, 220, {2, 4, 20, 3}, torch::kUInt8);
  torch::Tensor out = attack.apply(images);
  const auto in = images.accessor<uint8_t, 4>();
  const auto result = out.accessor<uint8_t, 4>();
  // v(i, j) = 20 sin(2 pi j 6 / 20): the same down a column and on each channel.
  for (const auto& [n, i, j, c] : {std::array<int, 4>{0, 0, 0, 0}, std::array<int, 4>{0, 1, 1, 2},
                                   std::array<int, 4>{1, 3, 2, 1}, std::array<int, 4>{1, 2, 5, 0},
                                   std::array<int, 4>{0, 3, 19, 1}}) {
    const double v = 20 * std::sin(2 * M_PI * j * 6 / 20.0);
    const double expected = std::clamp(std::nearbyint(in[n][i][j][c] + v), 0.0, 255.0);
    EXPECT_NEAR(result[n][i][j][c], expected, 0.51) << n << " " << i << " " << j << " " << c;
  }
  // Hand-computed: width 24, f 6 gives a period of 4 columns.
  Sig wide(sig(), 10, 2, 24);
  torch::Tensor grey = torch::full({1, 2, 24, 1}, 100, torch::kUInt8);
  torch::Tensor w = wide.apply(grey);
  // j = 1: 20 sin(2 pi / 4) = 20; j = 3: 20 sin(3 pi / 2) = -20.
  EXPECT_EQ(w[0][0][1][0].item<int>(), 120);
  EXPECT_EQ(w[0][1][1][0].item<int>(), 120);
  EXPECT_EQ(w[0][0][3][0].item<int>(), 80);
  EXPECT_EQ(w[0][0][0][0].item<int>(), 100);
  // Clipped to [0, 255].
  EXPECT_EQ(wide.apply(torch::full({1, 2, 24, 1}, 250, torch::kUInt8))[0][0][1][0].item<int>(),
            255);
  EXPECT_EQ(wide.apply(torch::full({1, 2, 24, 1}, 5, torch::kUInt8))[0][0][3][0].item<int>(), 0);
}

TEST(Sig, PoisonsOnlyTargetClassAndKeepsLabels) {
  AttackOptions o = sig();
  o.target = 1;
  o.poison_rate = 0.3;
  auto attack = create_attack(o, 8, 24, 1, 4);
  data::Dataset train{torch::full({203, 8, 24, 1}, 100, torch::kUInt8),
                      torch::arange(203, torch::kLong).remainder(4)};
  const int64_t target_size = train.labels.eq(1).sum().item<int64_t>();  // 51
  PoisonedSet poisoned = attack->poison(train, 5);
  ASSERT_EQ(poisoned.indices.size(0), std::llround(0.3 * target_size));
  EXPECT_TRUE(train.labels.index_select(0, poisoned.indices).eq(1).all().item<bool>());
  EXPECT_TRUE(poisoned.data.labels.equal(train.labels));
  torch::Tensor changed = poisoned.data.images.ne(train.images).flatten(1).any(1);
  EXPECT_EQ(changed.sum().item<int64_t>(), poisoned.indices.size(0));
  EXPECT_TRUE(changed.index_select(0, poisoned.indices).all().item<bool>());
  EXPECT_EQ(poisoned.noise_indices.size(0), 0);
}

TEST(Sig, DefaultsToEightyPercentOfTargetClass) {
  AttackOptions o = sig();
  EXPECT_DOUBLE_EQ(o.effective_poison_rate(), 0.8);
  AttackOptions b;
  b.name = "badnets";
  EXPECT_DOUBLE_EQ(b.effective_poison_rate(), 0.1);
  auto attack = create_attack(o, 8, 24, 1, 4);
  data::Dataset train{torch::zeros({40, 8, 24, 1}, torch::kUInt8),
                      torch::arange(40, torch::kLong).remainder(4)};
  EXPECT_EQ(attack->poison(train, 0).indices.size(0), 8);  // 0.8 of 10
  EXPECT_EQ(attack->options().to_json()["poison_rate"], 0.8);
  // The test set: the signal on the other classes.
  TriggeredSet triggered = attack->triggered_test_set(train);
  EXPECT_EQ(triggered.data.size(), 30);
  EXPECT_TRUE(triggered.attack_targets.eq(0).all().item<bool>());
}

TEST(Sig, RejectsAllToAllAndBadOptions) {
  AttackOptions o = sig();
  o.label_mode = LabelMode::kAllToAll;
  EXPECT_THROW(create_attack(o, 8, 8, 1, 10), UserError);
  o = sig();
  o.freq = 0;
  EXPECT_THROW(create_attack(o, 8, 8, 1, 10), UserError);
}

}  // namespace
}  // namespace nad::attacks
