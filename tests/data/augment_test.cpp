#include "nad/data/augment.h"

#include <gtest/gtest.h>

#include <vector>

#include "support/cuda.h"

namespace nad::data {
namespace {

TEST(Augment, CropShiftsWithZeroPadding) {
  // A single bright pixel moves by the crop offset or falls off; nothing else appears.
  torch::Tensor images = torch::zeros({64, 8, 8, 1}, torch::kUInt8);
  images.select(1, 4).select(1, 4).fill_(200);
  AugmentOptions o;
  o.crop_padding = 2;
  o.horizontal_flip = false;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  torch::Tensor out = augment_batch(images, o, gen);
  ASSERT_EQ(out.sizes(), images.sizes());
  std::set<std::pair<int64_t, int64_t>> positions;
  for (int n = 0; n < 64; ++n) {
    torch::Tensor lit = torch::nonzero(out[n].squeeze(-1));
    ASSERT_EQ(lit.size(0), 1);  // offsets of at most 2 keep the pixel inside
    const int64_t y = lit[0][0].item<int64_t>(), x = lit[0][1].item<int64_t>();
    EXPECT_GE(y, 2);
    EXPECT_LE(y, 6);
    EXPECT_GE(x, 2);
    EXPECT_LE(x, 6);
    positions.insert({y, x});
    EXPECT_EQ(out[n][y][x][0].item<int>(), 200);
  }
  EXPECT_GT(positions.size(), 10u);  // offsets really vary per sample
}

TEST(Augment, FlipMirrorsAboutHalfTheBatch) {
  torch::Tensor images = torch::zeros({200, 4, 4, 1}, torch::kUInt8);
  images.select(2, 0).fill_(9);  // left column
  AugmentOptions o;
  o.crop_padding = 0;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  torch::Tensor out = augment_batch(images, o, gen);
  const int64_t flipped = out.select(2, 3).eq(9).all(1).squeeze(-1).sum().item<int64_t>();
  const int64_t kept = out.select(2, 0).eq(9).all(1).squeeze(-1).sum().item<int64_t>();
  EXPECT_EQ(flipped + kept, 200);
  EXPECT_GT(flipped, 70);
  EXPECT_LT(flipped, 130);
}

TEST(Augment, CutoutZeroesTheReferenceHole) {
  torch::Tensor images = torch::full({50, 10, 10, 3}, 255, torch::kUInt8);
  AugmentOptions o;
  o.crop_padding = 0;
  o.horizontal_flip = false;
  o.cutout_holes = 1;
  o.cutout_length = 4;  // [c - 2, c + 2): at most 4 x 4 pixels, fewer at the border
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  torch::Tensor out = augment_batch(images, o, gen);
  for (int n = 0; n < 50; ++n) {
    const int64_t zeros = out[n].select(2, 0).eq(0).sum().item<int64_t>();
    EXPECT_GE(zeros, 4);
    EXPECT_LE(zeros, 16);
    EXPECT_TRUE(out[n].select(2, 0).eq(out[n].select(2, 2)).all().item<bool>());
  }
}

TEST(Augment, NoiseCutoutFillsOnlyTheHoleWithRandomPixels) {
  // A constant image of 128 everywhere: the hole is wherever pixels differ from 128.
  torch::Tensor images = torch::full({200, 10, 10, 1}, 128, torch::kUInt8);
  AugmentOptions o;
  o.crop_padding = 0;
  o.horizontal_flip = false;
  o.cutout_holes = 1;
  o.cutout_length = 4;
  o.cutout_fill = CutoutFill::kNoise;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  torch::Tensor out = augment_batch(images, o, gen);
  torch::Tensor changed = out.ne(128).squeeze(-1);  // N x H x W
  for (int n = 0; n < 200; ++n) {
    // At most a 4 x 4 hole: the changed pixels lie within 4 rows and 4 columns.
    torch::Tensor rows = changed[n].any(1).nonzero();
    torch::Tensor cols = changed[n].any(0).nonzero();
    if (rows.numel() == 0) continue;
    EXPECT_LE(rows.max().item<int64_t>() - rows.min().item<int64_t>(), 3);
    EXPECT_LE(cols.max().item<int64_t>() - cols.min().item<int64_t>(), 3);
  }
  // The fill is spread over 0..255, not a constant.
  torch::Tensor filled = out.masked_select(out.ne(128)).to(torch::kFloat);
  ASSERT_GT(filled.numel(), 1000);
  EXPECT_LT(filled.min().item<float>(), 20);
  EXPECT_GT(filled.max().item<float>(), 235);
  EXPECT_NEAR(filled.mean().item<float>(), 127.5, 8);
  // Same seed, same batch.
  auto again = at::make_generator<at::CPUGeneratorImpl>(5);
  EXPECT_TRUE(out.equal(augment_batch(images, o, again)));
  // The noise is the generator's int64 draws (drawn as uint8 for speed: the same numbers).
  auto reference = at::make_generator<at::CPUGeneratorImpl>(5);
  torch::randint(0, 10, {200}, reference, torch::kLong);  // the holes' centre rows
  torch::randint(0, 10, {200}, reference, torch::kLong);  // and columns
  const torch::Tensor noise =
      torch::randint(0, 256, images.sizes(), reference, torch::kLong).to(torch::kUInt8);
  const torch::Tensor hole = out.ne(128);
  EXPECT_TRUE(out.masked_select(hole).equal(noise.masked_select(hole)));
}

// Every transform at once against a batch computed pixel by pixel from the generator's draws,
// taken in their fixed order (crop rows, crop columns, flips, each hole's centre row and column,
// noise): the order decides what a seed gives, so runs stay reproducible across versions.
TEST(Augment, AllTransformsMatchABatchComputedByHand) {
  const int64_t n = 6, h = 7, w = 9, ch = 3, p = 2, holes = 2, length = 4, half = length / 2;
  torch::Tensor images = torch::randint(1, 256, {n, h, w, ch}, torch::kLong).to(torch::kUInt8);
  AugmentOptions o;
  o.crop_padding = p;
  o.horizontal_flip = true;
  o.cutout_holes = holes;
  o.cutout_length = length;
  o.cutout_fill = CutoutFill::kNoise;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const torch::Tensor out = augment_batch(images, o, gen);

  auto ref = at::make_generator<at::CPUGeneratorImpl>(11);
  const torch::Tensor dy = torch::randint(0, 2 * p + 1, {n}, ref, torch::kLong);
  const torch::Tensor dx = torch::randint(0, 2 * p + 1, {n}, ref, torch::kLong);
  const torch::Tensor flip = torch::rand({n}, ref) < 0.5;
  std::vector<torch::Tensor> cy, cx;
  for (int64_t k = 0; k < holes; ++k) {
    cy.push_back(torch::randint(0, h, {n}, ref, torch::kLong));
    cx.push_back(torch::randint(0, w, {n}, ref, torch::kLong));
  }
  const torch::Tensor noise = torch::randint(0, 256, {n, h, w, ch}, ref, torch::kLong);

  const auto in = images.accessor<uint8_t, 4>();
  const auto got = out.accessor<uint8_t, 4>();
  int64_t holes_seen = 0, flips_seen = 0;
  for (int64_t i = 0; i < n; ++i) {
    flips_seen += flip[i].item<bool>();
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        bool covered = false;
        for (int64_t k = 0; k < holes; ++k) {
          const int64_t ky = cy[k][i].item<int64_t>(), kx = cx[k][i].item<int64_t>();
          covered = covered || (y >= ky - half && y < ky + half && x >= kx - half && x < kx + half);
        }
        holes_seen += covered;
        // Flipped after cropping: column x of the result is column w-1-x of the crop.
        const int64_t crop_x = flip[i].item<bool>() ? w - 1 - x : x;
        const int64_t sy = y + dy[i].item<int64_t>() - p, sx = crop_x + dx[i].item<int64_t>() - p;
        for (int64_t c = 0; c < ch; ++c) {
          int64_t expected = 0;
          if (covered) {
            expected = noise[i][y][x][c].item<int64_t>();
          } else if (sy >= 0 && sy < h && sx >= 0 && sx < w) {
            expected = in[i][sy][sx][c];
          }
          ASSERT_EQ(got[i][y][x][c], expected)
              << "image " << i << " at " << y << "," << x << "," << c;
        }
      }
    }
  }
  EXPECT_GT(holes_seen, 0);
  EXPECT_GT(flips_seen, 0);
  EXPECT_LT(flips_seen, n);
}

TEST(Augment, ToInputScalesAndTransposes) {
  torch::Tensor images = torch::tensor({0, 255, 51, 102}, torch::kUInt8).view({1, 2, 1, 2});
  torch::Tensor x = to_input(images);
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({1, 2, 2, 1}));
  EXPECT_FLOAT_EQ(x[0][0][0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(x[0][1][0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(x[0][0][1][0].item<float>(), 0.2f);
}

// The random draws come from the CPU generator, so the batch is the same pixel for pixel on
// either device; only the tensor work moves.
TEST(AugmentCuda, SameImagesAsOnTheCpu) {
  NAD_REQUIRE_CUDA();
  torch::manual_seed(3);
  const torch::Tensor images =
      torch::randint(0, 256, {64, 8, 8, 3}, torch::kLong).to(torch::kUInt8);
  AugmentOptions o;
  o.crop_padding = 2;
  o.cutout_holes = 2;
  o.cutout_length = 3;
  o.cutout_fill = CutoutFill::kNoise;
  auto cpu_generator = at::make_generator<at::CPUGeneratorImpl>(7);
  auto cuda_generator = at::make_generator<at::CPUGeneratorImpl>(7);
  const torch::Tensor on_cpu = augment_batch(images, o, cpu_generator);
  const torch::Tensor on_cuda = augment_batch(images.to(torch::kCUDA), o, cuda_generator);
  ASSERT_TRUE(on_cuda.is_cuda());
  EXPECT_TRUE(torch::equal(on_cpu, on_cuda.cpu()));
  EXPECT_FALSE(torch::equal(on_cpu, images));
  // The conversion to [0, 1] may differ in the last bit: CUDA divides by a scalar as a
  // multiplication by its reciprocal (seen on an H200 with LibTorch 2.11).
  EXPECT_TRUE(torch::allclose(to_input(images).to(torch::kCUDA), to_input(images.to(torch::kCUDA)),
                              /*rtol=*/0, /*atol=*/1e-7));
}

}  // namespace
}  // namespace nad::data
