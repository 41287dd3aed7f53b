#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "nad/data/dataset.h"

namespace nad::defenses {

// The defender's clean data: a stratified seeded sample of the clean training set. When a
// validation fraction is asked for, that share of it is held out for choosing the learning
// rate and never trained on.
struct CleanData {
  torch::Tensor indices;  // rows of the clean training set, sorted
  data::Dataset train;
  data::Dataset validation;  // empty when no hold-out was asked for
};

CleanData make_clean_data(const data::Dataset& clean_train, double ratio, uint64_t seed,
                          double validation_fraction);
// The same from an indices file written by an earlier run (one index per line), so that every
// defense of an experiment uses the identical subset.
CleanData clean_data_from_file(const data::Dataset& clean_train, const std::filesystem::path& file,
                               uint64_t seed, double validation_fraction);

void write_indices(const std::filesystem::path& file, const torch::Tensor& indices);
torch::Tensor read_indices(const std::filesystem::path& file, int64_t limit);

}  // namespace nad::defenses
