#include "nad/defenses/lr_search.h"

#include <gtest/gtest.h>

namespace nad::defenses {
namespace {

TEST(LrSearch, TakesTheLargestRateWithinTolerance) {
  LrSearchOptions o;
  o.grid = {0.01, 0.1, 0.05};  // order does not matter
  o.tolerance = 2.0;
  std::vector<double> tried;
  // Validation accuracy falls as the rate grows: 0.1 -> 80, 0.05 -> 89, 0.01 -> 90.
  auto run = [&](double lr) {
    tried.push_back(lr);
    LrTrial t;
    t.lr = lr;
    t.val_acc = lr > 0.07 ? 80 : (lr > 0.02 ? 89 : 90);
    return t;
  };
  LrSearchResult r = search_lr(o, 90.5, run, {});
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.05);
  EXPECT_EQ(tried, (std::vector<double>{0.1, 0.05}));  // stops at the first accepted rate
  ASSERT_EQ(r.tried.size(), 2u);
  EXPECT_FALSE(r.tried[0]["accepted"].get<bool>());
  EXPECT_TRUE(r.tried[1]["accepted"].get<bool>());
}

TEST(LrSearch, SkipsRatesAboveTheCapAndFallsBackToTheSmallest) {
  LrSearchOptions o;
  o.grid = {0.1, 0.05, 0.01};
  std::vector<double> tried;
  auto run = [&](double lr) {
    tried.push_back(lr);
    LrTrial t;
    t.lr = lr;
    t.diverged = lr > 0.07;
    t.val_acc = 10;
    return t;
  };
  LrSearchResult r = search_lr(o, 90, run, {}, 0.05);
  EXPECT_EQ(tried, (std::vector<double>{0.05, 0.01}));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.01);
}

}  // namespace
}  // namespace nad::defenses
