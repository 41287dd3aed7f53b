#include "nad/defenses/clean_subset.h"

#include <sstream>

#include "nad/data/subset.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"

namespace nad::defenses {

namespace {
CleanData split(const data::Dataset& clean_train, const torch::Tensor& indices, uint64_t seed,
                double validation_fraction) {
  CleanData out;
  out.indices = indices;
  if (validation_fraction > 0) {
    auto [train_rows, validation_rows] =
        data::split_holdout(indices, clean_train.labels, validation_fraction, seed + 1);
    out.train = clean_train.select(train_rows);
    out.validation = clean_train.select(validation_rows);
  } else {
    out.train = clean_train.select(indices);
  }
  if (out.train.size() < 2)
    throw UserError("the clean subset is too small to train on; raise " + flag::clean_ratio);
  return out;
}
}  // namespace

CleanData make_clean_data(const data::Dataset& clean_train, double ratio, uint64_t seed,
                          double validation_fraction) {
  return split(clean_train, data::stratified_subset(clean_train.labels, ratio, seed), seed,
               validation_fraction);
}

CleanData clean_data_from_file(const data::Dataset& clean_train, const std::filesystem::path& file,
                               uint64_t seed, double validation_fraction) {
  return split(clean_train, read_indices(file, clean_train.size()), seed, validation_fraction);
}

void write_indices(const std::filesystem::path& file, const torch::Tensor& indices) {
  std::ostringstream text;
  const auto* data = indices.contiguous().data_ptr<int64_t>();
  for (int64_t i = 0; i < indices.numel(); ++i) text << data[i] << '\n';
  write_text_atomic(file, text.str());
}

torch::Tensor read_indices(const std::filesystem::path& file, int64_t limit) {
  const auto bytes = read_file_bytes(file);
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  std::vector<int64_t> values;
  std::string token;
  while (in >> token) {
    char* end = nullptr;
    const long long v = std::strtoll(token.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v >= limit) {
      throw UserError("'" + file.string() + "': bad index '" + token + "' (expected 0.." +
                      std::to_string(limit - 1) + ")");
    }
    values.push_back(v);
  }
  if (values.empty()) throw UserError("'" + file.string() + "' holds no indices");
  return std::get<0>(torch::_unique(torch::tensor(values, torch::kLong), /*sorted=*/true));
}

}  // namespace nad::defenses
