#include "nad/attacks/wanet.h"

#include <gtest/gtest.h>

#include "nad/util/error.h"

namespace nad::attacks {
namespace {

AttackOptions wanet(double strength = 0.5, uint64_t seed = 0) {
  AttackOptions o;
  o.name = "wanet";
  o.strength = strength;
  o.pattern_seed = seed;
  return o;
}

TEST(WaNet, StrengthZeroIsTheIdentity) {
  WaNet attack(wanet(0), 10, 16, 12);
  torch::Tensor images = torch::randint(0, 256, {3, 16, 12, 3}, torch::kUInt8);
  EXPECT_TRUE(attack.apply(images).equal(images));
}

TEST(WaNet, SameSeedSameWarpAndPixelsMove) {
  WaNet a(wanet(), 10, 16, 16), b(wanet(), 10, 16, 16), c(wanet(0.5, 7), 10, 16, 16);
  EXPECT_TRUE(a.grid().equal(b.grid()));
  EXPECT_FALSE(a.grid().equal(c.grid()));
  // A smooth image (a ramp plus a wave) so that warping changes values.
  torch::Tensor x = torch::arange(16, torch::kFloat);
  torch::Tensor image = (x.view({1, -1}) * 12 + (x.view({-1, 1}) * 0.9).sin() * 60 + 60)
                            .clamp(0, 255)
                            .to(torch::kUInt8)
                            .view({1, 16, 16, 1});
  torch::Tensor out = a.apply(image);
  EXPECT_TRUE(out.equal(b.apply(image)));
  EXPECT_GT(out.ne(image).sum().item<int64_t>(), 16);
  // The field moves sampling points by at most about s * max|noise| / H pixels, not far.
  torch::Tensor shift = (a.grid() - WaNet(wanet(0), 10, 16, 16).grid()).abs();
  EXPECT_GT(shift.max().item<float>(), 0.0f);
  EXPECT_LT(shift.max().item<float>(), 0.5f);
}

TEST(WaNet, NoiseModeRowsKeepTheirLabels) {
  AttackOptions o = wanet();
  o.poison_rate = 0.1;
  o.target = 0;
  auto attack = create_attack(o, 16, 16, 1, 4);
  torch::Tensor x = torch::arange(16, torch::kFloat);
  torch::Tensor ramp = (x.view({1, -1}) * 15 + x.view({-1, 1}) * 3).to(torch::kUInt8);
  data::Dataset train{ramp.view({1, 16, 16, 1}).repeat({200, 1, 1, 1}).contiguous(),
                      torch::arange(200, torch::kLong).remainder(4)};
  PoisonedSet poisoned = attack->poison(train, 3);
  ASSERT_EQ(poisoned.indices.size(0), 20);
  ASSERT_EQ(poisoned.noise_indices.size(0), 40);  // cross ratio 2
  // Disjoint from the poisoned rows, labels kept, images changed.
  torch::Tensor both = torch::cat({poisoned.indices, poisoned.noise_indices});
  EXPECT_EQ(std::get<0>(at::_unique(both)).size(0), 60);
  EXPECT_TRUE(poisoned.data.labels.index_select(0, poisoned.noise_indices)
                  .equal(train.labels.index_select(0, poisoned.noise_indices)));
  EXPECT_TRUE(poisoned.data.labels.index_select(0, poisoned.indices).eq(0).all().item<bool>());
  torch::Tensor changed = poisoned.data.images.ne(train.images).flatten(1).any(1);
  EXPECT_TRUE(changed.index_select(0, poisoned.noise_indices).all().item<bool>());
  EXPECT_EQ(changed.sum().item<int64_t>(), 60);
  // Noise rows differ from the plain warp.
  torch::Tensor noisy = poisoned.data.images.index_select(0, poisoned.noise_indices);
  EXPECT_FALSE(noisy.equal(attack->apply(train.images.index_select(0, poisoned.noise_indices))));
}

TEST(WaNet, AllowsAllToAllAndRejectsBadGrid) {
  AttackOptions o = wanet();
  o.label_mode = LabelMode::kAllToAll;
  EXPECT_NE(create_attack(o, 16, 16, 3, 10), nullptr);
  o.grid_k = 1;
  EXPECT_THROW(create_attack(o, 16, 16, 3, 10), UserError);
  o.grid_k = 17;
  EXPECT_THROW(create_attack(o, 16, 16, 3, 10), UserError);
}

}  // namespace
}  // namespace nad::attacks
