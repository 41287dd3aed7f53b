#include "nad/io/figure.h"

#include <gtest/gtest.h>

#include "nad/data/readers.h"
#include "support/temp_dir.h"

namespace nad::io {
namespace {

TEST(Figure, InfernoColourMap) {
  EXPECT_EQ(inferno(0), (std::array<uint8_t, 3>{0, 0, 4}));
  EXPECT_EQ(inferno(0.5), (std::array<uint8_t, 3>{188, 55, 84}));
  EXPECT_EQ(inferno(1), (std::array<uint8_t, 3>{252, 255, 164}));
  // Halfway between the first two stops (0, 0, 4) and (87, 16, 110), rounded.
  EXPECT_EQ(inferno(0.125), (std::array<uint8_t, 3>{44, 8, 57}));
  EXPECT_EQ(inferno(-3), inferno(0));
  EXPECT_EQ(inferno(7), inferno(1));
}

std::array<uint8_t, 3> pixel(const torch::Tensor& image, int64_t x, int64_t y) {
  return {image[y][x][0].item<uint8_t>(), image[y][x][1].item<uint8_t>(),
          image[y][x][2].item<uint8_t>()};
}

TEST(Figure, AttentionFigurePlacesInputsAndHeatMaps) {
  if (!figures_available()) GTEST_SKIP() << "built without Cairo";
  test::TempDir dir;
  AttentionRow row;
  row.label = "model";
  row.clean = torch::zeros({4, 4, 3}, torch::kUInt8);
  row.clean.select(2, 0).fill_(255);  // red
  row.triggered = torch::zeros({4, 4, 3}, torch::kUInt8);
  row.triggered.select(2, 2).fill_(255);  // blue
  // The hottest cell top-left, the coldest bottom-right; values are scaled to their range.
  row.maps = {torch::tensor({{3.0f, 2.0f}, {2.0f, 1.0f}})};
  AttentionFigure figure;
  figure.title = "test";
  figure.group_names = {"g1"};
  figure.images = {{row}};
  write_attention_figure(dir / "a.png", figure);
  const torch::Tensor image = data::read_image(dir / "a.png", 3);
  // Label column 190 px, cells of 96 px 8 px apart, maps below a 64 px header.
  ASSERT_EQ(image.size(1), 190 + 3 * (96 + 8) + 8);
  ASSERT_EQ(image.size(0), 64 + 96 + 8 + 28);
  EXPECT_EQ(pixel(image, 190 + 10, 64 + 10), (std::array<uint8_t, 3>{255, 0, 0}));
  EXPECT_EQ(pixel(image, 294 + 90, 64 + 90), (std::array<uint8_t, 3>{0, 0, 255}));
  EXPECT_EQ(pixel(image, 398, 64), inferno(1));
  EXPECT_EQ(pixel(image, 398 + 95, 64 + 95), inferno(0));
  EXPECT_EQ(pixel(image, 5, 64 + 90), (std::array<uint8_t, 3>{255, 255, 255}));
}

TEST(Figure, LineChartIsWritten) {
  if (!figures_available()) GTEST_SKIP() << "built without Cairo";
  test::TempDir dir;
  LineChart chart;
  chart.title = "curve";
  chart.series = {{"ACC", {0, 1, 2}, {50, 60, 70}, {0, 0, 1}, false}};
  write_line_chart(dir / "c.png", chart);
  const torch::Tensor image = data::read_image(dir / "c.png", 3);
  EXPECT_EQ(image.size(0), 420);
  EXPECT_EQ(image.size(1), 720);
  // The series' colour appears (its line and markers).
  EXPECT_GT(image.select(2, 2).eq(255).logical_and(image.select(2, 0).eq(0)).sum().item<int64_t>(),
            100);
}

}  // namespace
}  // namespace nad::io
