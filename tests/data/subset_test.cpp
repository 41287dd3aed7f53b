#include "nad/data/subset.h"

#include <gtest/gtest.h>

#include "nad/util/error.h"

namespace nad::data {
namespace {

TEST(StratifiedSubset, KeepsClassProportionsAndSize) {
  // 600 of class 0, 300 of class 1, 100 of class 2.
  torch::Tensor labels =
      torch::cat({torch::zeros({600}, torch::kLong), torch::ones({300}, torch::kLong),
                  torch::full({100}, 2, torch::kLong)});
  labels = labels.index_select(0, torch::randperm(1000, torch::kLong));
  torch::Tensor subset = stratified_subset(labels, 0.05, 7);
  ASSERT_EQ(subset.size(0), 50);
  torch::Tensor counts = torch::bincount(labels.index_select(0, subset), {}, 3);
  EXPECT_EQ(counts[0].item<int64_t>(), 30);
  EXPECT_EQ(counts[1].item<int64_t>(), 15);
  EXPECT_EQ(counts[2].item<int64_t>(), 5);
  // Unique, sorted and reproducible.
  EXPECT_EQ(std::get<0>(torch::_unique(subset)).size(0), 50);
  EXPECT_TRUE(subset.equal(std::get<0>(subset.sort())));
  EXPECT_TRUE(stratified_subset(labels, 0.05, 7).equal(subset));
  EXPECT_FALSE(stratified_subset(labels, 0.05, 8).equal(subset));
}

TEST(StratifiedSubset, LargestRemaindersFillTheTotal) {
  torch::Tensor labels = torch::arange(30, torch::kLong).remainder(3);  // 10 per class
  torch::Tensor subset = stratified_subset(labels, 0.5, 1);             // 15: 5 each
  torch::Tensor counts = torch::bincount(labels.index_select(0, subset), {}, 3);
  EXPECT_TRUE(counts.equal(torch::full({3}, 5, torch::kLong)));
  EXPECT_EQ(stratified_subset(labels, 0.1, 1).size(0), 3);
  EXPECT_THROW(stratified_subset(labels, 0.0, 1), UserError);
  EXPECT_THROW(stratified_subset(labels, 1.5, 1), UserError);
}

TEST(SplitHoldout, PartsAreDisjointAndStratified) {
  torch::Tensor labels = torch::arange(1000, torch::kLong).remainder(10);
  torch::Tensor subset = stratified_subset(labels, 0.2, 3);
  auto [train, held] = split_holdout(subset, labels, 0.1, 4);
  EXPECT_EQ(train.size(0), 180);
  EXPECT_EQ(held.size(0), 20);
  EXPECT_EQ(std::get<0>(torch::_unique(torch::cat({train, held}))).size(0), 200);
  EXPECT_TRUE(torch::bincount(labels.index_select(0, held), {}, 10).eq(2).all().item<bool>());
}

}  // namespace
}  // namespace nad::data
