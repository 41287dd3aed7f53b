#include "nad/data/subset.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::data {

torch::Tensor stratified_subset(const torch::Tensor& labels, double ratio, uint64_t seed) {
  if (!(ratio > 0 && ratio <= 1)) throw UserError(flag::clean_ratio + " must be in (0, 1]");
  const int64_t n = labels.size(0);
  const int64_t total = std::llround(ratio * static_cast<double>(n));
  const int64_t num_classes = labels.numel() ? labels.max().item<int64_t>() + 1 : 0;
  torch::Tensor counts = torch::bincount(labels, {}, num_classes);

  // Largest-remainder apportionment so that the shares add up to `total` exactly.
  std::vector<int64_t> share(num_classes);
  std::vector<std::pair<double, int64_t>> remainders;
  int64_t assigned = 0;
  for (int64_t c = 0; c < num_classes; ++c) {
    const double exact = static_cast<double>(counts[c].item<int64_t>()) * total / n;
    share[c] = static_cast<int64_t>(std::floor(exact));
    assigned += share[c];
    remainders.emplace_back(exact - share[c], c);
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (int64_t i = 0; assigned < total && i < num_classes; ++i, ++assigned) {
    ++share[remainders[i].second];
  }

  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<torch::Tensor> picked;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (share[c] == 0) continue;
    torch::Tensor rows = torch::nonzero(labels == c).flatten();
    torch::Tensor order = torch::randperm(rows.size(0), generator, torch::kLong);
    picked.push_back(rows.index_select(0, order.slice(0, 0, share[c])));
  }
  if (picked.empty()) return torch::empty({0}, torch::kLong);
  return std::get<0>(torch::cat(picked).sort());
}

std::pair<torch::Tensor, torch::Tensor> split_holdout(const torch::Tensor& indices,
                                                      const torch::Tensor& labels, double fraction,
                                                      uint64_t seed) {
  torch::Tensor local = stratified_subset(labels.index_select(0, indices), fraction, seed);
  torch::Tensor is_held = torch::zeros({indices.size(0)}, torch::kBool);
  is_held.index_fill_(0, local, true);
  return {indices.masked_select(~is_held), indices.masked_select(is_held)};
}

}  // namespace nad::data
