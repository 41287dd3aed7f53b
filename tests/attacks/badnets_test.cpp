#include "nad/attacks/badnets.h"

#include <gtest/gtest.h>

#include "nad/util/error.h"

namespace nad::attacks {
namespace {

AttackOptions badnets(const std::string& trigger) {
  AttackOptions o;
  o.name = "badnets";
  o.trigger = trigger;
  o.target = 5;
  return o;
}

TEST(BadNets, GridMatchesTheReferencePixels) {
  auto attack = create_attack(badnets("grid"), 8, 10, 3, 10);
  torch::Tensor images = torch::full({2, 8, 10, 3}, 100, torch::kUInt8);
  torch::Tensor out = attack->apply(images);
  const int H = 8, W = 10;
  // SPEC.md: rows from the bottom up, columns from the right edge left.
  const int expected[3][3] = {{255, 0, 255}, {0, 255, 0}, {255, 0, 0}};
  for (int n = 0; n < 2; ++n) {
    for (int up = 0; up < 3; ++up) {
      for (int left = 0; left < 3; ++left) {
        for (int c = 0; c < 3; ++c) {
          EXPECT_EQ(out[n][H - 1 - up][W - 1 - left][c].item<int>(), expected[up][left])
              << "up " << up << " left " << left;
        }
      }
    }
  }
  EXPECT_EQ(out[0][H - 1][W - 1][0].item<int>(), 255);
  EXPECT_EQ(out[0][H - 1][W - 2][0].item<int>(), 0);
  EXPECT_EQ(out[0][H - 3][W - 3][0].item<int>(), 0);
  // Nothing outside the 3x3 corner changes.
  torch::Tensor untouched = out.slice(1, 0, H - 3);
  EXPECT_TRUE(untouched.eq(100).all().item<bool>());
  EXPECT_TRUE(out.slice(2, 0, W - 3).eq(100).all().item<bool>());
  EXPECT_EQ(out.ne(images).sum().item<int64_t>(), 2 * 9 * 3);
}

TEST(BadNets, SquareIsWhite) {
  auto attack = create_attack(badnets("square"), 6, 6, 1, 10);
  torch::Tensor out = attack->apply(torch::zeros({1, 6, 6, 1}, torch::kUInt8));
  EXPECT_EQ(out.sum().item<int64_t>(), 9 * 255);
  EXPECT_TRUE(out.slice(1, 3, 6).slice(2, 3, 6).eq(255).all().item<bool>());
}

TEST(BadNets, FourCornerMirrorsTheGrid) {
  auto attack = create_attack(badnets("four-corner"), 8, 8, 1, 10);
  torch::Tensor out = attack->apply(torch::full({1, 8, 8, 1}, 7, torch::kUInt8))[0].squeeze(-1);
  EXPECT_EQ(out[7][7].item<int>(), 255);
  EXPECT_EQ(out[0][0].item<int>(), 255);
  EXPECT_EQ(out[0][7].item<int>(), 255);
  EXPECT_EQ(out[7][0].item<int>(), 255);
  EXPECT_EQ(out[7][6].item<int>(), 0);
  EXPECT_EQ(out[7][1].item<int>(), 0);
  EXPECT_EQ(out[5][5].item<int>(), 0);  // the grid's [up 2][left 2]
  EXPECT_EQ(out[2][2].item<int>(), 0);
  EXPECT_EQ(out[2][0].item<int>(), 255);  // up 2, left 0 mirrored to the top-left
  EXPECT_EQ(out[4][4].item<int>(), 7);    // centre untouched
  EXPECT_EQ(out.ne(7).sum().item<int64_t>(), 36);
}

TEST(Attack, PoisonsExactlyTheRateAndRelabels) {
  AttackOptions o = badnets("grid");
  o.poison_rate = 0.1;
  o.target = 0;
  auto attack = create_attack(o, 8, 8, 1, 4);
  data::Dataset train{torch::full({200, 8, 8, 1}, 50, torch::kUInt8),
                      torch::arange(200, torch::kLong).remainder(4)};
  PoisonedSet poisoned = attack->poison(train, 3);
  ASSERT_EQ(poisoned.indices.size(0), 20);
  // All-to-one never picks a row already in the target class.
  EXPECT_TRUE(train.labels.index_select(0, poisoned.indices).ne(0).all().item<bool>());
  EXPECT_TRUE(poisoned.data.labels.index_select(0, poisoned.indices).eq(0).all().item<bool>());
  // Exactly the poisoned rows changed.
  torch::Tensor changed = poisoned.data.images.ne(train.images).flatten(1).any(1);
  EXPECT_EQ(changed.sum().item<int64_t>(), 20);
  EXPECT_TRUE(changed.index_select(0, poisoned.indices).all().item<bool>());
  // The same seed picks the same rows; another seed others.
  EXPECT_TRUE(attack->poison(train, 3).indices.equal(poisoned.indices));
  EXPECT_FALSE(attack->poison(train, 4).indices.equal(poisoned.indices));
}

TEST(Attack, AllToAllMapsToNextClass) {
  AttackOptions o = badnets("grid");
  o.label_mode = LabelMode::kAllToAll;
  o.poison_rate = 1.0;
  auto attack = create_attack(o, 8, 8, 1, 4);
  torch::Tensor labels = torch::tensor({0, 1, 2, 3}, torch::kLong);
  EXPECT_TRUE(attack->target_labels(labels).equal(torch::tensor({1, 2, 3, 0}, torch::kLong)));
  data::Dataset test{torch::zeros({4, 8, 8, 1}, torch::kUInt8), labels};
  TriggeredSet triggered = attack->triggered_test_set(test);
  EXPECT_EQ(triggered.data.size(), 4);  // every row counts for all-to-all
  PoisonedSet poisoned = attack->poison(test, 0);
  EXPECT_TRUE(poisoned.data.labels.equal(torch::tensor({1, 2, 3, 0}, torch::kLong)));
}

TEST(Attack, TriggeredTestSetSkipsTargetClass) {
  AttackOptions o = badnets("grid");
  o.target = 2;
  auto attack = create_attack(o, 8, 8, 1, 4);
  data::Dataset test{torch::zeros({8, 8, 8, 1}, torch::kUInt8),
                     torch::tensor({0, 1, 2, 3, 2, 2, 1, 0}, torch::kLong)};
  TriggeredSet triggered = attack->triggered_test_set(test);
  EXPECT_EQ(triggered.data.size(), 5);
  EXPECT_TRUE(triggered.data.labels.ne(2).all().item<bool>());
  EXPECT_TRUE(triggered.attack_targets.eq(2).all().item<bool>());
  EXPECT_EQ(triggered.data.images[0][7][7][0].item<int>(), 255);
}

TEST(Attack, RejectsBadOptions) {
  AttackOptions o = badnets("grid");
  o.target = 10;
  EXPECT_THROW(create_attack(o, 8, 8, 1, 10), UserError);
  o = badnets("diamond");
  EXPECT_THROW(create_attack(o, 8, 8, 1, 10), UserError);
  o = badnets("grid");
  o.poison_rate = 1.5;
  EXPECT_THROW(create_attack(o, 8, 8, 1, 10), UserError);
  o.name = "nope";
  EXPECT_THROW(create_attack(o, 8, 8, 1, 10), UserError);
  o.name = "none";
  EXPECT_EQ(create_attack(o, 8, 8, 1, 10), nullptr);
}

}  // namespace
}  // namespace nad::attacks
