#include "nad/io/figure.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "nad/util/error.h"
#include "nad/util/files.h"

#ifdef NAD_HAVE_CAIRO
#include <cairo.h>
#endif

namespace nad::io {

std::array<uint8_t, 3> inferno(double value) {
  // Control points of matplotlib's inferno at 0, 1/4, 1/2, 3/4 and 1, linearly interpolated.
  static const double kStops[5][3] = {
      {0, 0, 4}, {87, 16, 110}, {188, 55, 84}, {249, 142, 9}, {252, 255, 164}};
  const double v = std::isfinite(value) ? std::clamp(value, 0.0, 1.0) * 4 : 0;
  const int i = std::min(3, static_cast<int>(v));
  const double f = v - i;
  std::array<uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c) {
    rgb[c] =
        static_cast<uint8_t>(std::lround(kStops[i][c] + f * (kStops[i + 1][c] - kStops[i][c])));
  }
  return rgb;
}

std::vector<double> histogram_percent(const std::vector<double>& values, double x_min, double x_max,
                                      int bins) {
  if (bins < 1 || !(x_max > x_min)) {
    throw std::invalid_argument("histogram: needs bins >= 1 and x_max > x_min");
  }
  std::vector<double> percent(static_cast<size_t>(bins), 0.0);
  if (values.empty()) return percent;
  const double share = 100.0 / static_cast<double>(values.size());
  for (double v : values) {
    const double position = std::isfinite(v) ? (v - x_min) / (x_max - x_min) * bins : 0;
    const int bin = std::clamp(static_cast<int>(std::floor(position)), 0, bins - 1);
    percent[static_cast<size_t>(bin)] += share;
  }
  return percent;
}

#ifdef NAD_HAVE_CAIRO

bool figures_available() { return true; }

namespace {

constexpr int kCell = 96;  // side of each picture in the attention figure

// Cairo's RGB24 surface from H x W x C uint8 (C = 1 or 3), enlarged to `side` x `side` with
// nearest-neighbour sampling so that single-pixel triggers stay sharp.
cairo_surface_t* image_surface(const torch::Tensor& image, int side) {
  torch::Tensor img = image.to(torch::kCPU, torch::kFloat).permute({2, 0, 1}).unsqueeze(0);
  namespace F = torch::nn::functional;
  img = F::interpolate(
      img,
      F::InterpolateFuncOptions().size(std::vector<int64_t>{side, side}).mode(torch::kNearest));
  img = img.squeeze(0).permute({1, 2, 0}).round().clamp(0, 255).to(torch::kUInt8).contiguous();
  if (img.size(2) == 1) img = img.expand({side, side, 3}).contiguous();
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, side, side);
  cairo_surface_flush(surface);
  unsigned char* data = cairo_image_surface_get_data(surface);
  const int stride = cairo_image_surface_get_stride(surface);
  auto px = img.accessor<uint8_t, 3>();
  for (int y = 0; y < side; ++y) {
    auto* row = reinterpret_cast<uint32_t*>(data + y * stride);
    for (int x = 0; x < side; ++x) {
      row[x] = (uint32_t{px[y][x][0]} << 16) | (uint32_t{px[y][x][1]} << 8) | px[y][x][2];
    }
  }
  cairo_surface_mark_dirty(surface);
  return surface;
}

// An h x w float map scaled to its own range, smoothly resized to side x side and coloured,
// as a side x side x 3 uint8 image.
torch::Tensor heat_image(const torch::Tensor& map, int side) {
  namespace F = torch::nn::functional;
  torch::Tensor m =
      F::interpolate(
          map.detach().to(torch::kCPU, torch::kDouble).view({1, 1, map.size(0), map.size(1)}),
          F::InterpolateFuncOptions()
              .size(std::vector<int64_t>{side, side})
              .mode(torch::kBilinear)
              .align_corners(false))
          .view({side, side})
          .contiguous();
  const double lo = m.min().item<double>(), hi = m.max().item<double>();
  m = hi > lo ? (m - lo) / (hi - lo) : torch::zeros_like(m);
  torch::Tensor out = torch::empty({m.size(0), m.size(1), 3}, torch::kUInt8);
  auto in = m.accessor<double, 2>();
  auto px = out.accessor<uint8_t, 3>();
  for (int64_t y = 0; y < m.size(0); ++y) {
    for (int64_t x = 0; x < m.size(1); ++x) {
      const auto rgb = inferno(in[y][x]);
      for (int c = 0; c < 3; ++c) px[y][x][c] = rgb[c];
    }
  }
  return out;
}

void draw_surface(cairo_t* cr, cairo_surface_t* surface, double x, double y) {
  cairo_set_source_surface(cr, surface, x, y);
  cairo_paint(cr);
  cairo_surface_destroy(surface);
}

void text(cairo_t* cr, const std::string& s, double x, double y, double size, bool bold = false,
          double align = 0) {  // align: 0 left, 0.5 centred, 1 right
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t extents;
  cairo_text_extents(cr, s.c_str(), &extents);
  cairo_move_to(cr, x - align * extents.x_advance, y);
  cairo_show_text(cr, s.c_str());
}

// A y-axis title, rotated, centred on `centre_y`.
void y_axis_label(cairo_t* cr, const std::string& label, double x, double centre_y) {
  cairo_save(cr);
  cairo_move_to(cr, x, centre_y);
  cairo_rotate(cr, -M_PI / 2);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_text_extents_t extents;
  cairo_text_extents(cr, label.c_str(), &extents);
  cairo_rel_move_to(cr, -extents.x_advance / 2, 0);
  cairo_show_text(cr, label.c_str());
  cairo_restore(cr);
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

void save(cairo_surface_t* surface, const std::filesystem::path& file) {
  std::string bytes;
  const cairo_status_t status = cairo_surface_write_to_png_stream(surface, append_bytes, &bytes);
  cairo_surface_destroy(surface);
  if (status != CAIRO_STATUS_SUCCESS) {
    throw std::runtime_error(file.string() + ": " + cairo_status_to_string(status));
  }
  write_file_atomic(file, bytes.data(), bytes.size());
}

std::string format_tick(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", std::round(v * 100) / 100);
  return buf;
}

}  // namespace

void write_attention_figure(const std::filesystem::path& file, const AttentionFigure& figure) {
  const int groups = static_cast<int>(figure.group_names.size());
  const int label_width = 190, gap = 8, header = 64, block_gap = 14, row_height = kCell + gap;
  int rows = 0;
  for (const auto& block : figure.images) rows += static_cast<int>(block.size());
  const int blocks = static_cast<int>(figure.images.size());
  const int width = label_width + (2 + groups) * (kCell + gap) + gap;
  const int height = header + rows * row_height + std::max(0, blocks - 1) * block_gap + 28;

  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, figure.title, gap, 22, 15, true);
  std::vector<std::string> columns{"input", "with trigger"};
  for (const auto& g : figure.group_names) columns.push_back(g);
  for (size_t c = 0; c < columns.size(); ++c) {
    text(cr, columns[c], label_width + c * (kCell + gap) + kCell / 2.0, header - 10, 12, true, 0.5);
  }
  if (groups > 0) {
    const double maps_left = label_width + 2 * (kCell + gap);
    const double maps_width = groups * (kCell + gap) - gap;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    text(cr, "attention of the triggered input, by group", maps_left + maps_width / 2, header - 28,
         11, false, 0.5);
    cairo_move_to(cr, maps_left, header - 24);
    cairo_line_to(cr, maps_left + maps_width, header - 24);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
  }
  double y = header;
  for (const auto& block : figure.images) {
    for (const auto& row : block) {
      if (static_cast<int>(row.maps.size()) != groups) {
        cairo_destroy(cr);
        cairo_surface_destroy(surface);
        throw std::invalid_argument("attention figure: a row has the wrong number of maps");
      }
      cairo_set_source_rgb(cr, 0, 0, 0);
      text(cr, row.label, gap, y + kCell / 2.0 - 4, 13, true);
      cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
      double line_y = y + kCell / 2.0 + 14;
      for (size_t start = 0; start <= row.caption.size();) {
        size_t end = row.caption.find('\n', start);
        if (end == std::string::npos) end = row.caption.size();
        text(cr, row.caption.substr(start, end - start), gap, line_y, 11);
        line_y += 15;
        start = end + 1;
      }
      double x = label_width;
      draw_surface(cr, image_surface(row.clean, kCell), x, y);
      x += kCell + gap;
      draw_surface(cr, image_surface(row.triggered, kCell), x, y);
      for (const auto& map : row.maps) {
        x += kCell + gap;
        draw_surface(cr, image_surface(heat_image(map, kCell), kCell), x, y);
      }
      y += row_height;
    }
    y += block_gap;
  }
  // The colour key.
  const double key_x = label_width, key_y = height - 20, key_w = 200;
  for (int i = 0; i < static_cast<int>(key_w); ++i) {
    const auto rgb = inferno(i / (key_w - 1));
    cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
    cairo_rectangle(cr, key_x + i, key_y, 1, 10);
    cairo_fill(cr);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, "low", key_x - 6, key_y + 9, 11, false, 1);
  text(cr, "high attention (each map scaled to its own range)", key_x + key_w + 6, key_y + 9, 11);
  cairo_destroy(cr);
  save(surface, file);
}

void write_line_chart(const std::filesystem::path& file, const LineChart& chart) {
  const int width = 720, height = 420;
  const double left = 64, right = 170, top = 44, bottom = 52;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  double x_min = 0, x_max = 1;
  bool any = false;
  for (const auto& s : chart.series) {
    for (double x : s.x) {
      x_min = any ? std::min(x_min, x) : x;
      x_max = any ? std::max(x_max, x) : x;
      any = true;
    }
  }
  if (x_max <= x_min) x_max = x_min + 1;
  const double y_span = chart.y_max > chart.y_min ? chart.y_max - chart.y_min : 1;
  auto px = [&](double x) { return left + (x - x_min) / (x_max - x_min) * plot_w; };
  auto py = [&](double y) { return top + plot_h - (y - chart.y_min) / y_span * plot_h; };

  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, chart.title, left, 26, 15, true);

  // Grid and ticks: y in fifths of the range, x at whole steps (at most about 10 labels).
  cairo_set_line_width(cr, 1);
  for (int i = 0; i <= 5; ++i) {
    const double v = chart.y_min + y_span * i / 5;
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, left, py(v));
    cairo_line_to(cr, left + plot_w, py(v));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, format_tick(v), left - 6, py(v) + 4, 11, false, 1);
  }
  const double x_step = std::max(1.0, std::ceil((x_max - x_min) / 10));
  for (double v = std::ceil(x_min); v <= x_max + 1e-9; v += x_step) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, px(v), top + plot_h);
    cairo_line_to(cr, px(v), top + plot_h + 4);
    cairo_stroke(cr);
    text(cr, format_tick(v), px(v), top + plot_h + 17, 11, false, 0.5);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, left, top, plot_w, plot_h);
  cairo_stroke(cr);
  text(cr, chart.x_label, left + plot_w / 2, height - 12, 12, false, 0.5);
  y_axis_label(cr, chart.y_label, 18, top + plot_h / 2);

  const double dash[] = {6, 4};
  double legend_y = top + 10;
  for (const auto& s : chart.series) {
    cairo_set_source_rgb(cr, s.rgb[0], s.rgb[1], s.rgb[2]);
    cairo_set_line_width(cr, 2);
    cairo_set_dash(cr, dash, s.dashed ? 2 : 0, 0);
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (i == 0) {
        cairo_move_to(cr, px(s.x[i]), py(s.y[i]));
      } else {
        cairo_line_to(cr, px(s.x[i]), py(s.y[i]));
      }
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, dash, 0, 0);
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      cairo_arc(cr, px(s.x[i]), py(s.y[i]), 2.5, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    cairo_set_dash(cr, dash, s.dashed ? 2 : 0, 0);
    cairo_move_to(cr, left + plot_w + 14, legend_y);
    cairo_line_to(cr, left + plot_w + 40, legend_y);
    cairo_stroke(cr);
    cairo_set_dash(cr, dash, 0, 0);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, s.name, left + plot_w + 46, legend_y + 4, 12);
    legend_y += 20;
  }
  cairo_destroy(cr);
  save(surface, file);
}

void write_image_grid(const std::filesystem::path& file, const ImageGrid& grid) {
  const int rows = static_cast<int>(grid.row_labels.size());
  const int columns = static_cast<int>(grid.column_labels.size());
  if (static_cast<int>(grid.cells.size()) != rows) {
    throw std::invalid_argument("image grid: cells and row labels differ in count");
  }
  const int cell = 72, gap = 8, label_width = 120, header = 60, footer = 30;
  const int width = label_width + columns * (cell + gap) + gap;
  const int height = header + rows * (cell + gap) + footer;
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, grid.title, gap, 22, 15, true);
  for (int c = 0; c < columns; ++c) {
    const bool marked = c < static_cast<int>(grid.marked.size()) && grid.marked[c];
    const double x = label_width + c * (cell + gap);
    if (marked) cairo_set_source_rgb(cr, 0.8, 0, 0);
    text(cr, grid.column_labels[c], x + cell / 2.0, header - 10, 12, marked, 0.5);
    cairo_set_source_rgb(cr, 0, 0, 0);
  }
  for (int r = 0; r < rows; ++r) {
    const double y = header + r * (cell + gap);
    if (static_cast<int>(grid.cells[r].size()) != columns) {
      cairo_destroy(cr);
      cairo_surface_destroy(surface);
      throw std::invalid_argument("image grid: a row has the wrong number of cells");
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, grid.row_labels[r], gap, y + cell / 2.0 + 4, 12, true);
    for (int c = 0; c < columns; ++c) {
      draw_surface(cr, image_surface(grid.cells[r][c], cell), label_width + c * (cell + gap), y);
    }
  }
  for (int c = 0; c < columns && c < static_cast<int>(grid.marked.size()); ++c) {
    if (!grid.marked[c]) continue;
    cairo_set_source_rgb(cr, 0.85, 0, 0);
    cairo_set_line_width(cr, 3);
    cairo_rectangle(cr, label_width + c * (cell + gap) - 3, header - 3, cell + 6,
                    rows * (cell + gap) - gap + 6);
    cairo_stroke(cr);
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  text(cr, grid.note, gap, height - 10, 11);
  cairo_destroy(cr);
  save(surface, file);
}

void write_bar_chart(const std::filesystem::path& file, const BarChart& chart) {
  const int bars = static_cast<int>(chart.labels.size());
  if (static_cast<int>(chart.values.size()) != bars) {
    throw std::invalid_argument("bar chart: labels and values differ in count");
  }
  const int width = std::max(480, 90 + bars * 44 + 40), height = 400;
  const double left = 70, right = 30, top = 44, bottom = 60;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  double y_max = chart.line.value_or(0);
  for (double v : chart.values) y_max = std::max(y_max, v);
  y_max = y_max > 0 ? y_max * 1.1 : 1;
  auto py = [&](double v) { return top + plot_h - v / y_max * plot_h; };

  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, chart.title, left, 26, 15, true);
  cairo_set_line_width(cr, 1);
  for (int i = 0; i <= 5; ++i) {
    const double v = y_max * i / 5;
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, left, py(v));
    cairo_line_to(cr, left + plot_w, py(v));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, format_tick(v), left - 6, py(v) + 4, 11, false, 1);
  }
  const double slot = bars > 0 ? plot_w / bars : plot_w;
  for (int b = 0; b < bars; ++b) {
    const bool marked = b < static_cast<int>(chart.marked.size()) && chart.marked[b];
    const double v = std::isfinite(chart.values[b]) ? std::max(0.0, chart.values[b]) : 0;
    if (marked) {
      cairo_set_source_rgb(cr, 0.85, 0.1, 0.1);
    } else {
      cairo_set_source_rgb(cr, 0.25, 0.45, 0.75);
    }
    cairo_rectangle(cr, left + b * slot + slot * 0.15, py(v), slot * 0.7, py(0) - py(v));
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, chart.labels[b], left + (b + 0.5) * slot, top + plot_h + 16, 11, marked, 0.5);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, left, top, plot_w, plot_h);
  cairo_stroke(cr);
  if (chart.line) {
    const double dash[] = {6, 4};
    cairo_set_source_rgb(cr, 0.85, 0.1, 0.1);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_width(cr, 1.5);
    cairo_move_to(cr, left, py(*chart.line));
    cairo_line_to(cr, left + plot_w, py(*chart.line));
    cairo_stroke(cr);
    cairo_set_dash(cr, dash, 0, 0);
    text(cr, chart.line_label, left + plot_w - 4, py(*chart.line) - 5, 11, false, 1);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, chart.x_label, left + plot_w / 2, height - 14, 12, false, 0.5);
  y_axis_label(cr, chart.y_label, 18, top + plot_h / 2);
  cairo_destroy(cr);
  save(surface, file);
}

void write_histogram(const std::filesystem::path& file, const Histogram& histogram) {
  const int width = 720, height = 420;
  const double left = 64, right = 190, top = 44, bottom = 52;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  std::vector<std::vector<double>> percents;
  double y_max = 0;
  for (const auto& s : histogram.series) {
    percents.push_back(
        histogram_percent(s.values, histogram.x_min, histogram.x_max, histogram.bins));
    for (double p : percents.back()) y_max = std::max(y_max, p);
  }
  // The y axis up to the next multiple of 5 percent above the tallest bar.
  y_max = std::max(5.0, std::ceil(y_max / 5) * 5);
  const double x_span = histogram.x_max - histogram.x_min;
  auto px = [&](double x) { return left + (x - histogram.x_min) / x_span * plot_w; };
  auto py = [&](double y) { return top + plot_h - y / y_max * plot_h; };

  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, histogram.title, left, 26, 15, true);
  cairo_set_line_width(cr, 1);
  for (int i = 0; i <= 5; ++i) {
    const double v = y_max * i / 5;
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, left, py(v));
    cairo_line_to(cr, left + plot_w, py(v));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, format_tick(v), left - 6, py(v) + 4, 11, false, 1);
  }
  for (int i = 0; i <= 5; ++i) {
    const double v = histogram.x_min + x_span * i / 5;
    cairo_move_to(cr, px(v), top + plot_h);
    cairo_line_to(cr, px(v), top + plot_h + 4);
    cairo_stroke(cr);
    text(cr, format_tick(v), px(v), top + plot_h + 17, 11, false, 0.5);
  }
  // Bars drawn translucent so that overlapping sets stay visible.
  const double bin_w = plot_w / histogram.bins;
  for (size_t s = 0; s < histogram.series.size(); ++s) {
    const auto& rgb = histogram.series[s].rgb;
    cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], 0.45);
    for (int b = 0; b < histogram.bins; ++b) {
      const double p = percents[s][static_cast<size_t>(b)];
      if (p <= 0) continue;
      cairo_rectangle(cr, left + b * bin_w, py(p), bin_w, top + plot_h - py(p));
      cairo_fill(cr);
    }
  }
  const double dash[] = {6, 4};
  cairo_set_line_width(cr, 1.5);
  for (const auto& marker : histogram.markers) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_dash(cr, dash, 2, 0);
    const double x = px(std::clamp(marker.x, histogram.x_min, histogram.x_max));
    cairo_move_to(cr, x, top);
    cairo_line_to(cr, x, top + plot_h);
    cairo_stroke(cr);
    cairo_set_dash(cr, dash, 0, 0);
  }
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, left, top, plot_w, plot_h);
  cairo_stroke(cr);
  text(cr, histogram.x_label, left + plot_w / 2, height - 12, 12, false, 0.5);
  y_axis_label(cr, "% of the set's images", 18, top + plot_h / 2);

  double legend_y = top + 10;
  for (const auto& s : histogram.series) {
    cairo_set_source_rgba(cr, s.rgb[0], s.rgb[1], s.rgb[2], 0.45);
    cairo_rectangle(cr, left + plot_w + 14, legend_y - 7, 26, 12);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, s.name, left + plot_w + 46, legend_y + 4, 12);
    legend_y += 20;
  }
  for (const auto& marker : histogram.markers) {
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_width(cr, 1.5);
    cairo_move_to(cr, left + plot_w + 14, legend_y);
    cairo_line_to(cr, left + plot_w + 40, legend_y);
    cairo_stroke(cr);
    cairo_set_dash(cr, dash, 0, 0);
    text(cr, marker.name, left + plot_w + 46, legend_y + 4, 12);
    legend_y += 20;
  }
  cairo_destroy(cr);
  save(surface, file);
}

#else  // !NAD_HAVE_CAIRO

bool figures_available() { return false; }

void write_attention_figure(const std::filesystem::path& file, const AttentionFigure&) {
  throw UserError(file.string() + ": this nad was built without Cairo, so it draws no figures");
}

void write_line_chart(const std::filesystem::path& file, const LineChart&) {
  throw UserError(file.string() + ": this nad was built without Cairo, so it draws no figures");
}

void write_image_grid(const std::filesystem::path& file, const ImageGrid&) {
  throw UserError(file.string() + ": this nad was built without Cairo, so it draws no figures");
}

void write_bar_chart(const std::filesystem::path& file, const BarChart&) {
  throw UserError(file.string() + ": this nad was built without Cairo, so it draws no figures");
}

void write_histogram(const std::filesystem::path& file, const Histogram&) {
  throw UserError(file.string() + ": this nad was built without Cairo, so it draws no figures");
}

#endif

}  // namespace nad::io
