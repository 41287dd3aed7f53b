#include "nad/defenses/lr_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "nad/util/error.h"

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

// Per-image hold-out results of `n` images, wrong on [wrong_from, wrong_to).
torch::Tensor correct_except(int64_t n, int64_t wrong_from, int64_t wrong_to) {
  torch::Tensor correct = torch::ones({n}, torch::kBool);
  correct.slice(0, wrong_from, wrong_to).fill_(false);
  return correct;
}

// Runs with per-image results: accuracy follows from them.
TrialRunner runner_with_images(std::map<double, torch::Tensor> correct) {
  return [correct](double lr) {
    LrTrial t;
    t.lr = lr;
    t.model = models::create_model({"mnist-cnn", 1, 2, 8, 8});
    t.val_correct = correct.at(lr);
    t.val_acc = 100.0 * t.val_correct.sum().item<double>() / t.val_correct.numel();
    return t;
  };
}

TEST(LrSearch, PairedStandardErrorByHand) {
  const torch::Tensor a = torch::tensor({1, 1, 1, 0}).to(torch::kBool);
  const torch::Tensor b = torch::tensor({1, 0, 0, 1}).to(torch::kBool);
  // Differences per image: 0, +1, +1, -1. Mean 0.25; variance of the mean
  // (3/4 - 0.25^2) / 4 = 0.171875.
  EXPECT_NEAR(paired_standard_error(a, b), 100 * std::sqrt(0.171875), 1e-9);
  EXPECT_NEAR(paired_standard_error(b, a), 100 * std::sqrt(0.171875), 1e-9);
  EXPECT_EQ(paired_standard_error(a, a), 0);
  EXPECT_EQ(paired_standard_error(a, torch::Tensor()), 0);
}

// The same two accuracies (85.00 and 81.67 on 300 images: 3.33 points apart, over the 2-point
// tolerance) are a real loss when the larger rate only adds mistakes, and chance when the two
// runs disagree on many images.
TEST(LrSearch, AShortfallWithinTheNoiseGoesToTheLargerRate) {
  LrSearchOptions o;
  o.grid = {0.02, 0.05};
  const torch::Tensor best = correct_except(300, 0, 45);  // 255 right: 85.00%
  {
    // 0.05 wrong on the same 45 and 10 more: one standard error 1.04 points.
    LrSearchResult r =
        search_lr(o, 90, runner_with_images({{0.02, best}, {0.05, correct_except(300, 0, 55)}}));
    EXPECT_DOUBLE_EQ(r.chosen.lr, 0.02);
    EXPECT_FALSE(r.tried[1]["accepted"].get<bool>());
    EXPECT_NEAR(r.tried[1]["noise_margin"].get<double>(), 1.037, 1e-3);
  }
  {
    // 0.05 right on 30 of the 45 and wrong on 40 others: one standard error 2.78 points.
    torch::Tensor scattered = correct_except(300, 30, 45);
    scattered.slice(0, 100, 140).fill_(false);
    ASSERT_EQ(scattered.sum().item<int64_t>(), 245);
    LrSearchResult r = search_lr(o, 90, runner_with_images({{0.02, best}, {0.05, scattered}}));
    EXPECT_DOUBLE_EQ(r.chosen.lr, 0.05);
    EXPECT_TRUE(r.tried[1]["accepted"].get<bool>());
    EXPECT_NEAR(r.tried[1]["noise_margin"].get<double>(), 2.78, 1e-2);
    // Without the margin the bare tolerance rejects it.
    o.noise_margin = 0;
    EXPECT_DOUBLE_EQ(
        search_lr(o, 90, runner_with_images({{0.02, best}, {0.05, scattered}})).chosen.lr, 0.02);
  }
}

TEST(LrSearch, StepDownMeasuresTheNoiseAgainstTheTeacherSearchBest) {
  LrSearchOptions o;
  o.grid = {0.01, 0.02};
  o.step_down_from = 0.02;
  o.reference_val_correct = correct_except(300, 0, 45);
  o.reference_val_acc = 85.0;
  torch::Tensor scattered = correct_except(300, 30, 45);
  scattered.slice(0, 100, 140).fill_(false);
  LrSearchResult r =
      search_lr(o, 90, runner_with_images({{0.02, scattered}, {0.01, correct_except(300, 0, 45)}}));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.02);
  ASSERT_EQ(r.tried.size(), 1u);
  EXPECT_TRUE(r.best_val_correct.equal(o.reference_val_correct));
}

TEST(LrSearch, RefusesANegativeNoiseMargin) {
  LrSearchOptions o;
  o.noise_margin = -1;
  std::vector<double> tried;
  EXPECT_THROW(search_lr(o, 90, fake_runner({}, tried)), UserError);
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

TEST(LrSearch, EqualAccuraciesGoToTheLargerRate) {
  LrSearchOptions o;
  o.grid = {0.005, 0.01, 0.02};
  std::vector<double> tried;
  LrSearchResult r = search_lr(o, 90, fake_runner({{0.005, 85}, {0.01, 85}, {0.02, 85}}, tried));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.02);
}

TEST(LrSearch, LeastBackdooredByHand) {
  // Lowest 5% of 200 images: one standard error is sqrt(0.05 * 0.95 / 200) = 1.54 points, so
  // 5.5% ties with it and the larger rate wins; 12% does not.
  EXPECT_EQ(least_backdoored({{30, 200}, {5, 200}, {5.5, 200}, {12, 200}}, 1.0), 2u);
  EXPECT_EQ(least_backdoored({{30, 200}, {5, 200}, {6.6, 200}, {12, 200}}, 1.0), 1u);
  // The band is at least a point, even at 0% (no variance).
  EXPECT_EQ(least_backdoored({{0, 200}, {0.9, 200}}, 1.0), 1u);
  EXPECT_EQ(least_backdoored({{0, 200}, {1.1, 200}}, 1.0), 0u);
  EXPECT_EQ(least_backdoored({{3, 100}, {3, 100}}, 0.0), 1u);  // ties: the larger rate
  EXPECT_THROW(least_backdoored({}, 1.0), std::logic_error);
}

// Fake runs whose model carries its rate in its first weight, so that a probe can tell them
// apart.
TrialRunner runner_marking_models(std::map<double, double> val_acc, std::vector<double>& tried,
                                  double diverge_above = 1e9) {
  TrialRunner plain = fake_runner(std::move(val_acc), tried, diverge_above);
  return [plain](double lr) {
    LrTrial t = plain(lr);
    torch::NoGradGuard no_grad;
    t.model->parameters()[0].fill_(lr);
    return t;
  };
}

TEST(LrSearch, AProbeChoosesAmongTheAcceptedRatesTheLeastBackdoored) {
  LrSearchOptions o;
  o.grid = {0.01, 0.02, 0.05, 0.1, 0.2};
  const std::map<double, double> signal = {{0.01, 40}, {0.02, 4}, {0.05, 20}, {0.1, 0}};
  std::vector<double> probed;
  o.probe = [&](const models::Classifier& model) {
    const double lr = model->parameters()[0].view(-1)[0].item<float>();
    double found = -1;
    for (const auto& [rate, percent] : signal) {
      if (std::abs(rate - lr) < 1e-6) found = rate;
    }
    probed.push_back(found);
    return BackdoorSignal{signal.at(found), 250};
  };
  std::vector<double> tried;
  // 0.1 falls 6 points short and diverges above 0.15 would not matter: the search stops at 0.1.
  LrSearchResult r = search_lr(
      o, 90, runner_marking_models({{0.01, 86}, {0.02, 85.5}, {0.05, 84.5}, {0.1, 80}}, tried));
  EXPECT_EQ(tried, (std::vector<double>{0.01, 0.02, 0.05, 0.1}));
  // The rejected rate is never probed, however clean it looks.
  EXPECT_EQ(probed, (std::vector<double>{0.01, 0.02, 0.05}));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.02);  // accuracy alone takes 0.05
  ASSERT_EQ(r.tried.size(), 4u);
  EXPECT_DOUBLE_EQ(r.tried[1]["backdoor_signal"].get<double>(), 4);
  EXPECT_TRUE(r.tried[1]["chosen"].get<bool>());
  EXPECT_FALSE(r.tried[2]["chosen"].get<bool>());
  EXPECT_FALSE(r.tried[3].contains("backdoor_signal"));
  EXPECT_TRUE(r.tried[0]["candidate"].get<bool>());

  o.probe = {};
  probed.clear();
  tried.clear();
  EXPECT_DOUBLE_EQ(
      search_lr(o, 90,
                runner_marking_models({{0.01, 86}, {0.02, 85.5}, {0.05, 84.5}, {0.1, 80}}, tried))
          .chosen.lr,
      0.05);
}

// A rate accepted at its turn that a later, better run leaves out of tolerance is no candidate.
TEST(LrSearch, AProbeOnlyJudgesRatesWithinToleranceOfTheFinalBest) {
  LrSearchOptions o;
  o.grid = {0.002, 0.01, 0.05};
  o.noise_margin = 0;
  int calls = 0;
  o.probe = [&](const models::Classifier&) {
    ++calls;
    return BackdoorSignal{0, 100};
  };
  std::vector<double> tried;
  // 0.002 (80) is the best at its turn; 0.01 (85) then leaves it 5 points behind.
  LrSearchResult r =
      search_lr(o, 90, runner_marking_models({{0.002, 80}, {0.01, 85}, {0.05, 84}}, tried));
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(r.tried[0]["candidate"].get<bool>());
  EXPECT_FALSE(r.tried[0].contains("backdoor_signal"));
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.05);
}

TEST(LrSearch, AProbeNeverSeesADivergedRun) {
  LrSearchOptions o;
  o.grid = {0.01, 0.02, 0.05};
  int calls = 0;
  o.probe = [&](const models::Classifier&) {
    ++calls;
    return BackdoorSignal{10, 100};
  };
  std::vector<double> tried;
  LrSearchResult r =
      search_lr(o, 90, runner_marking_models({{0.01, 85}, {0.02, 85}, {0.05, 85}}, tried, 0.03));
  EXPECT_EQ(calls, 2);
  EXPECT_DOUBLE_EQ(r.chosen.lr, 0.02);  // equal signals: the larger accepted rate
  EXPECT_FALSE(r.chosen.diverged);
}

}  // namespace
}  // namespace nad::defenses
