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

TEST(Figure, HistogramPercentPerSet) {
  // Four bins of 0.25 over [0, 1]: 1.0 goes to the last bin, out-of-range values to the ends.
  const std::vector<double> percent =
      histogram_percent({0.1, 0.2, 0.3, 0.6, 1.0, -5, 7, 0.25}, 0, 1, 4);
  ASSERT_EQ(percent.size(), 4u);
  EXPECT_DOUBLE_EQ(percent[0], 37.5);  // 0.1, 0.2, -5
  EXPECT_DOUBLE_EQ(percent[1], 25);    // 0.3, 0.25
  EXPECT_DOUBLE_EQ(percent[2], 12.5);  // 0.6
  EXPECT_DOUBLE_EQ(percent[3], 25);    // 1.0, 7
  EXPECT_EQ(histogram_percent({}, 0, 1, 3), (std::vector<double>{0, 0, 0}));
}

TEST(Figure, HistogramIsWritten) {
  if (!figures_available()) GTEST_SKIP() << "built without Cairo";
  test::TempDir dir;
  Histogram histogram;
  histogram.title = "entropy";
  histogram.x_max = 2;
  histogram.bins = 10;
  histogram.series = {{"clean", {1.5, 1.6, 1.7}, {0, 0, 1}}, {"triggered", {0.1, 0.2}, {1, 0, 0}}};
  histogram.markers = {{"threshold", 1.0}};
  write_histogram(dir / "h.png", histogram);
  const torch::Tensor image = data::read_image(dir / "h.png", 3);
  EXPECT_EQ(image.size(0), 420);
  EXPECT_EQ(image.size(1), 720);
  // Both sets' bars are drawn: blue-ish (translucent blue on white) and red-ish pixels.
  const torch::Tensor r = image.select(2, 0).to(torch::kInt),
                      b = image.select(2, 2).to(torch::kInt);
  EXPECT_GT(b.gt(r + 60).sum().item<int64_t>(), 500);
  EXPECT_GT(r.gt(b + 60).sum().item<int64_t>(), 500);
}

}  // namespace
}  // namespace nad::io
