#pragma once
#include <torch/torch.h>

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

// Figures drawn with Cairo: attention heat maps side by side, line charts of ACC / ASR and
// histograms (STRIP's entropies).
namespace nad::io {

// One model's row: the input, the triggered input and one attention map per group.
struct AttentionRow {
  std::string label;                // the model, e.g. "backdoored" or "NAD"
  std::string caption;              // under the label; may hold line breaks
  torch::Tensor clean;              // H x W x C uint8
  torch::Tensor triggered;          // H x W x C uint8
  std::vector<torch::Tensor> maps;  // one h x w float map per group, of the triggered input
};

struct AttentionFigure {
  std::string title;
  std::vector<std::string> group_names;           // column titles of the maps
  std::vector<std::vector<AttentionRow>> images;  // per test image, one row per model
};

// Writes the figure as a PNG file, atomically. Each map is scaled to its own minimum and
// maximum and drawn with the inferno colour map (dark: low, yellow: high).
void write_attention_figure(const std::filesystem::path& file, const AttentionFigure& figure);

struct ChartSeries {
  std::string name;
  std::vector<double> x, y;
  std::array<double, 3> rgb{0, 0, 0};
  bool dashed = false;
};

struct LineChart {
  std::string title, x_label, y_label;
  double y_min = 0, y_max = 100;
  std::vector<ChartSeries> series;
};

void write_line_chart(const std::filesystem::path& file, const LineChart& chart);

// A grid of small pictures with row and column titles; `marked` columns are framed in red
// (Neural Cleanse's flagged classes).
struct ImageGrid {
  std::string title;
  std::vector<std::string> row_labels, column_labels;
  std::vector<std::vector<torch::Tensor>> cells;  // [row][column], H x W x C uint8 (C = 1 or 3)
  std::vector<bool> marked;                       // per column; empty: none
  std::string note;                               // a line under the grid
};

void write_image_grid(const std::filesystem::path& file, const ImageGrid& grid);

// Vertical bars, one per label, with an optional horizontal reference line; `marked` bars are
// drawn in red.
struct BarChart {
  std::string title, x_label, y_label;
  std::vector<std::string> labels;
  std::vector<double> values;
  std::vector<bool> marked;  // per bar; empty: none
  std::optional<double> line;
  std::string line_label;
};

void write_bar_chart(const std::filesystem::path& file, const BarChart& chart);

// Overlaid histograms of a few sets of values over the same bins, each bar the percent of its
// own set (so sets of different sizes compare), with optional vertical marker lines.
struct HistogramSeries {
  std::string name;
  std::vector<double> values;
  std::array<double, 3> rgb{0, 0, 0};
};

struct HistogramMarker {
  std::string name;
  double x = 0;
};

struct Histogram {
  std::string title, x_label;
  double x_min = 0, x_max = 1;  // values outside go to the first or last bin
  int bins = 30;
  std::vector<HistogramSeries> series;
  std::vector<HistogramMarker> markers;
};

// Percent of `values` in each of `bins` equal bins over [x_min, x_max] (the last bin closed);
// values outside fall into the first or last bin.
std::vector<double> histogram_percent(const std::vector<double>& values, double x_min, double x_max,
                                      int bins);

void write_histogram(const std::filesystem::path& file, const Histogram& histogram);

// The colour of `value` in [0, 1] on the inferno map, as 0-255 RGB.
std::array<uint8_t, 3> inferno(double value);

// Whether this build draws figures (it needs Cairo); without, the writers throw UserError.
bool figures_available();

}  // namespace nad::io
