#include "nad/defenses/data_inspection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::defenses {

namespace {

torch::Tensor class_rows(const torch::Tensor& labels, int64_t label) {
  return torch::nonzero(labels == label).flatten();
}

std::vector<int64_t> class_labels(const torch::Tensor& labels) {
  const torch::Tensor unique = std::get<0>(torch::_unique(labels.cpu(), /*sorted=*/true));
  return std::vector<int64_t>(unique.data_ptr<int64_t>(),
                              unique.data_ptr<int64_t>() + unique.numel());
}

void check_rows(const torch::Tensor& features, const torch::Tensor& labels) {
  if (features.dim() != 2 || labels.dim() != 1 || features.size(0) != labels.size(0)) {
    throw std::invalid_argument("data inspection: features must be N x D and labels N");
  }
}

}  // namespace

torch::Tensor spectral_scores(const torch::Tensor& features) {
  const torch::Tensor x = features.to(torch::kCPU, torch::kDouble);
  const torch::Tensor centred = x - x.mean(0, /*keepdim=*/true);
  if (x.size(0) < 2) return torch::zeros({x.size(0)}, torch::kDouble);
  // The top right singular vector: the leading eigenvector of the D x D scatter matrix (cheaper
  // than an SVD of the N x D matrix when N is large).
  const torch::Tensor scatter = centred.t().mm(centred);
  const auto [values, vectors] = torch::linalg_eigh(scatter);
  const torch::Tensor top = vectors.select(1, vectors.size(1) - 1);
  return centred.mv(top).pow(2);
}

InspectionResult spectral_signatures(const torch::Tensor& features, const torch::Tensor& labels,
                                     double expected_poison_rate, double multiplier) {
  check_rows(features, labels);
  if (!(expected_poison_rate >= 0 && expected_poison_rate <= 1)) {
    throw UserError(flag::expected_poison_rate + " must be in [0, 1]");
  }
  InspectionResult result;
  result.method = "spectral";
  result.scores = torch::zeros({features.size(0)}, torch::kDouble);
  const torch::Tensor cpu_labels = labels.cpu();
  for (const int64_t label : class_labels(cpu_labels)) {
    const torch::Tensor rows = class_rows(cpu_labels, label);
    const torch::Tensor scores =
        spectral_scores(features.index_select(0, rows.to(features.device())));
    result.scores.index_put_({rows}, scores);
    ClassScores c;
    c.label = label;
    c.size = rows.size(0);
    c.suspects = std::min<int64_t>(
        c.size, static_cast<int64_t>(std::floor(multiplier * expected_poison_rate * c.size)));
    c.statistic = scores.numel() ? std::sqrt(scores.sum().item<double>()) : 0;
    if (c.suspects > 0) {
      const torch::Tensor top = std::get<1>(scores.topk(c.suspects));
      const torch::Tensor chosen = rows.index_select(0, top);
      result.suspects.insert(result.suspects.end(), chosen.data_ptr<int64_t>(),
                             chosen.data_ptr<int64_t>() + chosen.numel());
    }
    result.classes.push_back(c);
  }
  std::sort(result.suspects.begin(), result.suspects.end());
  return result;
}

torch::Tensor fast_ica(const torch::Tensor& input, int64_t components, uint64_t seed) {
  const torch::Tensor x = input.to(torch::kCPU, torch::kDouble);
  const int64_t n = x.size(0);
  const int64_t k = std::min<int64_t>({components, x.size(1), n});
  const torch::Tensor centred = x - x.mean(0, /*keepdim=*/true);
  // Whitening by PCA: the k leading directions, scaled to unit variance (sklearn's whiten).
  const auto svd = torch::linalg_svd(centred, /*full_matrices=*/false);
  const torch::Tensor u = std::get<0>(svd).slice(1, 0, k);
  const torch::Tensor white = u * std::sqrt(static_cast<double>(n));  // N x k, unit variance
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor w = torch::randn({k, k}, generator, torch::kDouble);
  auto decorrelate = [](const torch::Tensor& m) {
    // (W W^T)^(-1/2) W
    const auto [values, vectors] = torch::linalg_eigh(m.mm(m.t()));
    return vectors.mm(torch::diag(values.clamp_min(1e-12).rsqrt())).mm(vectors.t()).mm(m);
  };
  w = decorrelate(w);
  for (int iteration = 0; iteration < 200; ++iteration) {
    const torch::Tensor projected = white.mm(w.t());  // N x k
    const torch::Tensor g = projected.tanh();
    const torch::Tensor g_prime = 1 - g.pow(2);
    const torch::Tensor updated =
        decorrelate(g.t().mm(white) / static_cast<double>(n) - g_prime.mean(0).unsqueeze(1) * w);
    const double change = (updated.mm(w.t()).diagonal().abs() - 1).abs().max().item<double>();
    w = updated;
    if (change < 1e-4) break;
  }
  return white.mm(w.t());
}

torch::Tensor two_means(const torch::Tensor& input, uint64_t seed, int restarts) {
  const torch::Tensor x = input.to(torch::kCPU, torch::kDouble);
  const int64_t n = x.size(0);
  if (n < 2) return torch::zeros({n}, torch::kLong);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor best;
  double best_inertia = std::numeric_limits<double>::infinity();
  for (int restart = 0; restart < std::max(1, restarts); ++restart) {
    // k-means++: the first centre at random, the second drawn by squared distance.
    const int64_t first = torch::randint(n, {1}, generator, torch::kLong).item<int64_t>();
    const torch::Tensor d2 = (x - x[first]).pow(2).sum(1);
    const int64_t second = d2.sum().item<double>() > 0
                               ? torch::multinomial(d2, 1, false, generator).item<int64_t>()
                               : (first + 1) % n;
    torch::Tensor centres = torch::stack({x[first], x[second]});
    torch::Tensor assignment;
    for (int iteration = 0; iteration < 300; ++iteration) {
      const torch::Tensor distances = torch::cdist(x, centres).pow(2);  // N x 2
      const torch::Tensor next = distances.argmin(1);
      if (assignment.defined() && torch::equal(next, assignment)) break;
      assignment = next;
      for (int64_t c = 0; c < 2; ++c) {
        const torch::Tensor members = torch::nonzero(assignment == c).flatten();
        if (members.numel() > 0) centres[c] = x.index_select(0, members).mean(0);
      }
    }
    const double inertia = std::get<0>(torch::cdist(x, centres).pow(2).min(1)).sum().item<double>();
    if (inertia < best_inertia) {
      best_inertia = inertia;
      best = assignment;
    }
  }
  return best;
}

InspectionResult activation_clustering(const torch::Tensor& features, const torch::Tensor& labels,
                                       uint64_t seed, int64_t components, double size_threshold) {
  check_rows(features, labels);
  InspectionResult result;
  result.method = "clustering";
  result.scores = torch::zeros({features.size(0)}, torch::kDouble);
  const torch::Tensor cpu_labels = labels.cpu();
  for (const int64_t label : class_labels(cpu_labels)) {
    const torch::Tensor rows = class_rows(cpu_labels, label);
    ClassScores c;
    c.label = label;
    c.size = rows.size(0);
    if (c.size >= 4) {
      const torch::Tensor reduced =
          fast_ica(features.index_select(0, rows.to(features.device())), components, seed + label);
      const torch::Tensor clusters = two_means(reduced, seed + label);
      const int64_t ones = clusters.sum().item<int64_t>();
      const int64_t smaller = ones <= c.size - ones ? 1 : 0;
      const int64_t smaller_size = std::min(ones, c.size - ones);
      c.statistic = static_cast<double>(smaller_size) / c.size;
      const torch::Tensor chosen =
          rows.index_select(0, torch::nonzero(clusters == smaller).flatten());
      result.scores.index_fill_(0, chosen, 1.0);
      if (c.statistic < size_threshold) {
        result.suspects.insert(result.suspects.end(), chosen.data_ptr<int64_t>(),
                               chosen.data_ptr<int64_t>() + chosen.numel());
        c.suspects = chosen.numel();
      }
    }
    result.classes.push_back(c);
  }
  std::sort(result.suspects.begin(), result.suspects.end());
  return result;
}

DetectionRates detection_rates(const std::vector<int64_t>& suspects,
                               const torch::Tensor& poisoned_rows, int64_t total_rows) {
  const torch::Tensor p = poisoned_rows.to(torch::kCPU, torch::kLong).contiguous();
  const std::set<int64_t> poisoned(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
  DetectionRates r;
  r.poisoned = static_cast<int64_t>(poisoned.size());
  r.clean = total_rows - r.poisoned;
  for (const int64_t row : suspects) {
    if (poisoned.count(row)) {
      ++r.true_positives;
    } else {
      ++r.false_positives;
    }
  }
  r.tpr = r.poisoned ? 100.0 * r.true_positives / r.poisoned : 0;
  r.fpr = r.clean ? 100.0 * r.false_positives / r.clean : 0;
  return r;
}

}  // namespace nad::defenses
