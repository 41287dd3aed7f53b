#include "nad/attacks/refool.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "nad/data/augment.h"
#include "nad/data/readers.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

namespace {

constexpr double kGamma = 2.2;
constexpr double kGhostRate = 0.49;

bool is_image_file(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".ppm";
}

// A normalised 1-D Gaussian of the given odd size.
torch::Tensor gaussian_kernel(int64_t size, double sigma) {
  torch::Tensor x = torch::arange(size, torch::kDouble) - static_cast<double>(size / 2);
  torch::Tensor k = torch::exp(-x * x / (2 * sigma * sigma));
  return k / k.sum();
}

}  // namespace

Refool::Refool(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
               int64_t channels)
    : Attack(std::move(options), num_classes) {
  if (options_.reflection_select < 0) {
    throw UserError(flag::reflection_select + " must be >= 0 (0: no selection)");
  }
  if (options_.reflections_dir.empty()) return;
  namespace fs = std::filesystem;
  const fs::path dir = options_.reflections_dir;
  if (!fs::is_directory(dir)) {
    throw UserError(flag::reflections + " " + dir.string() + ": not a folder");
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw UserError(flag::reflections + " " + dir.string() +
                    ": no PNG, JPEG, BMP or PPM images in it");
  }
  std::vector<torch::Tensor> images;
  for (const auto& file : files) {
    images.push_back(
        data::resize_image(data::read_image(file, static_cast<int>(channels)), height, width));
  }
  reflections_ = torch::stack(images);
}

void Refool::prepare(const data::Dataset& train) {
  if (!reflections_.defined()) {
    torch::Tensor others = torch::nonzero(train.labels.cpu() != options_.target).flatten();
    if (others.size(0) == 0)
      throw UserError(flag::attack + " refool: no non-target images to reflect");
    auto generator = at::make_generator<at::CPUGeneratorImpl>(options_.pattern_seed + 1);
    torch::Tensor order = torch::randperm(others.size(0), generator, torch::kLong);
    const int64_t pool = options_.reflection_select > 0 ? kSelectionCandidates : kDefaultPoolSize;
    torch::Tensor rows =
        others.index_select(0, order.slice(0, 0, std::min<int64_t>(pool, others.size(0))));
    reflections_ = train.images.cpu().index_select(0, rows).contiguous();
  }
  if (needs_selection() && options_.reflection_select > reflections_.size(0)) {
    throw UserError(flag::reflection_select + " " + std::to_string(options_.reflection_select) +
                    ": only " + std::to_string(reflections_.size(0)) +
                    " candidate reflections to choose from");
  }
}

void Refool::keep_reflections(const torch::Tensor& rows) {
  reflections_ = reflections_.index_select(0, rows.cpu().to(torch::kLong)).contiguous();
  selected_ = true;
}

torch::Tensor Refool::apply(const torch::Tensor& images) const {
  return blend(images, torch::Tensor());
}

torch::Tensor Refool::apply_reflection(const torch::Tensor& images, int64_t reflection) const {
  return blend(images, torch::full({images.size(0)}, reflection, torch::kLong));
}

// `picks`: the pool row of each image; undefined: drawn at random.
torch::Tensor Refool::blend(const torch::Tensor& images, const torch::Tensor& picks) const {
  if (!reflections_.defined()) {
    throw std::logic_error("Refool: reflections used before prepare()");
  }
  const int64_t count = images.size(0);
  const int64_t height = images.size(1);
  torch::Tensor source = images.cpu().to(torch::kFloat).div(255);
  torch::Tensor pool = reflections_.to(torch::kFloat).div(255);
  // Every random number is drawn up front, so a batch's reflections depend only on the seed
  // and the row's position.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options_.pattern_seed);
  torch::Tensor u = torch::rand({count, 7}, generator, torch::kDouble);
  torch::Tensor pick = torch::randint(0, pool.size(0), {count}, generator, torch::kLong);
  if (picks.defined()) pick = picks.contiguous();
  const int64_t max_offset = std::max<int64_t>(1, height / 8);
  auto uu = u.accessor<double, 2>();
  auto chosen = pick.accessor<int64_t, 1>();
  std::vector<torch::Tensor> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const torch::Tensor t = source[i];
    const torch::Tensor r = pool[chosen[i]];
    const double alpha_t = 1 - (0.05 + 0.40 * uu[i][1]);
    if (uu[i][0] < kGhostRate) {
      const int64_t dy = 1 + std::min<int64_t>(max_offset - 1, uu[i][2] * max_offset);
      const int64_t dx = 1 + std::min<int64_t>(max_offset - 1, uu[i][3] * max_offset);
      const double ghost_alpha = std::abs((uu[i][4] > 0.5 ? 1.0 : 0.0) - (0.15 + 0.35 * uu[i][5]));
      out[static_cast<size_t>(i)] = refool_ghost(t, r, alpha_t, dy, dx, ghost_alpha);
    } else {
      const double sigma = (1 + 4 * uu[i][2]) * static_cast<double>(height) / 64.0;
      const double att = 1.08 + uu[i][3] / 10.0;
      out[static_cast<size_t>(i)] = refool_focal_blur(t, r, alpha_t, sigma, att);
    }
  }
  if (out.empty()) return images.clone();
  return torch::stack(out).mul(255).round().clamp(0, 255).to(torch::kUInt8).to(images.device());
}

torch::Tensor score_reflections(const models::Classifier& model, const Refool& attack,
                                const torch::Tensor& probe, torch::Device device,
                                int64_t batch_size) {
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t count = attack.reflections().size(0);
  const int64_t target = attack.options().target;
  std::vector<double> scores(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) {
    const torch::Tensor blended = attack.apply_reflection(probe, r).to(device);
    double total = 0;
    for (int64_t start = 0; start < blended.size(0); start += batch_size) {
      const torch::Tensor batch = blended.slice(0, start, start + batch_size);
      AutocastScope autocast(device);
      const torch::Tensor logits = model->forward(data::to_input(batch)).logits.to(torch::kFloat);
      total += torch::softmax(logits, 1).select(1, target).sum().item<double>();
    }
    scores[static_cast<size_t>(r)] = total / static_cast<double>(probe.size(0));
  }
  return torch::tensor(scores, torch::kDouble).to(torch::kFloat);
}

torch::Tensor refool_ghost(const torch::Tensor& t, const torch::Tensor& r, double alpha_t,
                           int64_t dy, int64_t dx, double ghost_alpha) {
  const int64_t height = r.size(0), width = r.size(1);
  torch::Tensor t_lin = t.pow(kGamma);
  torch::Tensor r_lin = r.pow(kGamma);
  torch::Tensor shifted = torch::zeros_like(r_lin);
  if (dy < height && dx < width) {
    shifted.slice(0, dy).slice(1, dx).copy_(r_lin.slice(0, 0, height - dy).slice(1, 0, width - dx));
  }
  torch::Tensor ghost = r_lin * ghost_alpha + shifted * (1 - ghost_alpha);
  torch::Tensor blended = ghost * (1 - alpha_t) + t_lin * alpha_t;
  return blended.pow(1 / kGamma).clamp(0, 1);
}

torch::Tensor refool_focal_blur(const torch::Tensor& t, const torch::Tensor& r, double alpha_t,
                                double sigma, double att) {
  const int64_t height = r.size(0), width = r.size(1);
  torch::Tensor t_lin = t.pow(kGamma);
  torch::Tensor r_lin = r.pow(kGamma);
  // Separable blur on 1 x C x H x W with mirrored borders (OpenCV's default, BORDER_REFLECT_101).
  const int64_t size = 2 * static_cast<int64_t>(std::ceil(2 * sigma)) + 1;
  const int64_t pad_y = std::min<int64_t>(size / 2, height - 1);
  const int64_t pad_x = std::min<int64_t>(size / 2, width - 1);
  torch::Tensor kernel = gaussian_kernel(size, sigma).to(r.dtype());
  torch::Tensor x = r_lin.permute({2, 0, 1}).unsqueeze(0);
  const int64_t channels = x.size(1);
  x = torch::reflection_pad2d(x, {pad_x, pad_x, pad_y, pad_y});
  // Kernel rows beyond the available mirror padding are dropped (tiny images only).
  torch::Tensor ky = kernel.slice(0, size / 2 - pad_y, size / 2 + pad_y + 1);
  torch::Tensor kx = kernel.slice(0, size / 2 - pad_x, size / 2 + pad_x + 1);
  ky = (ky / ky.sum()).view({1, 1, -1, 1}).repeat({channels, 1, 1, 1});
  kx = (kx / kx.sum()).view({1, 1, 1, -1}).repeat({channels, 1, 1, 1});
  x = torch::conv2d(x, ky, torch::Tensor(), torch::IntArrayRef{1}, torch::IntArrayRef{0},
                    torch::IntArrayRef{1}, channels);
  x = torch::conv2d(x, kx, torch::Tensor(), torch::IntArrayRef{1}, torch::IntArrayRef{0},
                    torch::IntArrayRef{1}, channels);
  torch::Tensor blurred = x.squeeze(0).permute({1, 2, 0});

  // Lower each channel so that the blend does not saturate, as the reference does.
  torch::Tensor blend = blurred + t_lin;
  torch::Tensor over = blend > 1;
  torch::Tensor over_mean = (blend * over).sum(torch::IntArrayRef{0, 1}) /
                            (over.sum(torch::IntArrayRef{0, 1}).to(blend.dtype()) + 1e-6);
  torch::Tensor shift = (torch::clamp_min(over_mean, 1) - 1) * att;
  blurred = (blurred - shift.view({1, 1, -1})).clamp(0, 1);

  // The reference's vignette (gen_kernel with nsig 3): the square root of a 2-D Gaussian
  // sampled at the midpoints of n equal cells spanning +-(3 + 3.5 / n) standard deviations.
  auto axis = [](int64_t n) {
    const double half = 3.0 + 3.5 / static_cast<double>(n);
    const double step = 2 * half / static_cast<double>(n);
    return torch::arange(n, torch::kDouble) * step - half + step / 2;
  };
  torch::Tensor ay = axis(height).view({-1, 1});
  torch::Tensor ax = axis(width).view({1, -1});
  torch::Tensor vignette = torch::exp(-(ay * ay + ax * ax) / 4).to(r.dtype()).unsqueeze(-1);
  torch::Tensor result = blurred * vignette * (1 - alpha_t / 2) + t_lin * alpha_t;
  return result.pow(1 / kGamma).clamp(0, 1);
}

}  // namespace nad::attacks
