#include "nad/attacks/sample_grid.h"

#include <gtest/gtest.h>

#include "nad/attacks/badnets.h"
#include "nad/data/readers.h"
#include "nad/io/png.h"
#include "support/temp_dir.h"

namespace nad::attacks {
namespace {

TEST(SampleGrid, PairsCleanAndTriggeredImagesPerClass) {
  attacks::AttackOptions o;
  o.name = "badnets";
  auto attack = attacks::create_attack(o, 16, 16, 1, 3);
  data::Dataset images{torch::randint(0, 200, {10, 16, 16, 1}, torch::kUInt8),
                       torch::tensor({0, 1, 2, 0, 1, 2, 0, 1, 2, 0}, torch::kLong)};
  torch::Tensor grid = sample_grid(images, *attack, 3, 2);
  // 16 px upscaled 6x to 96; each cell has a 2 px border above and below; a pair is
  // 4 + 96 + 1 | 1 + 96 + 4 wide.
  ASSERT_EQ(grid.sizes(), (std::vector<int64_t>{3 * 100, 2 * 202, 1}));
  // Class 1's first image (row 1) and its triggered copy, nearest-neighbour upscaled.
  torch::Tensor clean = grid.slice(0, 100 + 2, 100 + 98).slice(1, 4, 100);
  torch::Tensor triggered = grid.slice(0, 100 + 2, 100 + 98).slice(1, 102, 198);
  auto up = [](const torch::Tensor& t) {
    return t.repeat_interleave(6, 0).repeat_interleave(6, 1);
  };
  EXPECT_TRUE(clean.equal(up(images.images[1])));
  EXPECT_TRUE(triggered.equal(up(attack->apply(images.images.slice(0, 1, 2))[0])));
  // 28 px images are upscaled 4x (112), 32 px 3x (96).
  data::Dataset mnist{torch::zeros({2, 28, 28, 1}, torch::kUInt8), torch::tensor({0, 1})};
  EXPECT_EQ(sample_grid(mnist, *attacks::create_attack(o, 28, 28, 1, 2), 2).size(0), 2 * 116);
}

TEST(SampleGrid, PngRoundTrips) {
  test::TempDir dir;
  torch::Tensor image = torch::randint(0, 256, {5, 7, 3}, torch::kUInt8);
  io::write_png(dir / "x.png", image);
  EXPECT_TRUE(data::read_image(dir / "x.png", 3).equal(image));
}

}  // namespace
}  // namespace nad::attacks
