#include "nad/defenses/lr_search.h"

#include <gtest/gtest.h>

#include <map>

namespace nad::defenses {
namespace {

TrialRunner fake_runner(std::map<double, double> val_acc, std::vector<double>& tried,
                        double diverge_above = 1e9) {
  return [val_acc, &tried, diverge_above](double lr) {
    tried.push_back(lr);
    LrTrial t;
    t.lr = lr;
    t.model = models::create_model({"mnist-cnn", 1, 2, 8, 8});
    t.diverged = lr > diverge_above;
    t.val_acc = val_acc.at(lr);
    return t;
  };
}

TEST(LrSearch, TakesTheLargestRateWithinToleranceOfTheBest) {
  LrSearchOptions o;
  o.grid = {0.01, 0.1, 0.05};  // order does not matter
  o.tolerance = 2.0;
  std::vector<double> tried;
  // Accuracy falls as the rate grows: 0.01 -> 90, 0.05 -> 89, 0.1 -> 80.
  LrSearchResult r = search_lr(o, 95.0, fake_runner({{0.01, 90}, {0.05, 89}, {0.1, 80}}, tried));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.05);
  EXPECT_EQ(tried, (std::vector<double>{0.01, 0.05, 0.1}));
  ASSERT_EQ(r.tried.size(), 3u);
  EXPECT_TRUE(r.tried[1]["accepted"].get<bool>());
  EXPECT_FALSE(r.tried[2]["accepted"].get<bool>());
  EXPECT_DOUBLE_EQ(r.baseline_val_acc, 95.0);
}

TEST(LrSearch, TheReferenceIsTheBestFinetunedRun) {
  LrSearchOptions o;
  o.grid = {0.01, 0.05, 0.1, 0.2};
  std::vector<double> tried;
  // The original's 95 (memorised hold-out) is not the bar: 0.1 at 84 is within 2 of 85.
  LrSearchResult r =
      search_lr(o, 95.0, fake_runner({{0.01, 80}, {0.05, 85}, {0.1, 84}, {0.2, 82.9}}, tried));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.1);
  EXPECT_EQ(tried.size(), 4u);
}

TEST(LrSearch, StopsAtDivergence) {
  LrSearchOptions o;
  o.grid = {0.1, 0.05, 0.01, 0.005};
  std::vector<double> tried;
  LrSearchResult r =
      search_lr(o, 90, fake_runner({{0.005, 85}, {0.01, 86}, {0.05, 86}, {0.1, 86}}, tried, 0.02));
  EXPECT_EQ(tried, (std::vector<double>{0.005, 0.01, 0.05}));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.01);
  EXPECT_FALSE(r.chosen.diverged);
}

TEST(LrSearch, StepDownStartsAtTheGivenRateAndTakesTheFirstWithinTolerance) {
  LrSearchOptions o;
  o.grid = {0.005, 0.01, 0.02, 0.05, 0.1};
  o.step_down_from = 0.05;
  o.reference_val_acc = 88.0;
  std::vector<double> tried;
  // 0.05 falls 3 points short, 0.02 is within 2.
  LrSearchResult r = search_lr(
      o, 90, fake_runner({{0.005, 87}, {0.01, 87}, {0.02, 86.5}, {0.05, 85}, {0.1, 88}}, tried));
  EXPECT_EQ(tried, (std::vector<double>{0.05, 0.02}));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.02);
  ASSERT_EQ(r.tried.size(), 2u);
  EXPECT_FALSE(r.tried[0]["accepted"].get<bool>());
  EXPECT_TRUE(r.tried[1]["accepted"].get<bool>());
}

TEST(LrSearch, StepDownKeepsTheSmallestRateWhenNoneIsAccepted) {
  LrSearchOptions o;
  o.grid = {0.01, 0.02, 0.05};
  o.step_down_from = 0.02;
  o.reference_val_acc = 95.0;
  std::vector<double> tried;
  LrSearchResult r = search_lr(o, 90, fake_runner({{0.01, 80}, {0.02, 81}, {0.05, 99}}, tried));
  EXPECT_EQ(tried, (std::vector<double>{0.02, 0.01}));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.01);
  EXPECT_FALSE(r.tried[1]["accepted"].get<bool>());
}

}  // namespace
}  // namespace nad::defenses
