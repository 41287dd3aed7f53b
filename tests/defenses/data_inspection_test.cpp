#include "nad/defenses/data_inspection.h"

#include <gtest/gtest.h>

namespace nad::defenses {
namespace {

// A hand-made case: the centred rows (2, 0), (-2, 0), (0, 1), (0, -1) have their top right
// singular vector on the first axis, so the scores are 4, 4, 0, 0.
TEST(DataInspection, SpectralScoresAreSquaredProjectionsOnTheTopDirection) {
  const torch::Tensor f =
      torch::tensor({{3.0, 1.0}, {-1.0, 1.0}, {1.0, 2.0}, {1.0, 0.0}}, torch::kDouble);
  const torch::Tensor scores = spectral_scores(f);
  ASSERT_EQ(scores.numel(), 4);
  EXPECT_NEAR(scores[0].item<double>(), 4.0, 1e-9);
  EXPECT_NEAR(scores[1].item<double>(), 4.0, 1e-9);
  EXPECT_NEAR(scores[2].item<double>(), 0.0, 1e-9);
  EXPECT_NEAR(scores[3].item<double>(), 0.0, 1e-9);
}

// 500 clean rows of isotropic noise in class 3 and 50 planted ones shifted along one direction:
// with an expected rate of 0.1 the 1.5 x 0.1 x 550 = 82 highest scores hold all 50 planted rows.
// Class 1 (clean only) loses its own 15% but nothing planted.
TEST(DataInspection, SpectralSignaturesFindAPlantedOutlierGroup) {
  torch::manual_seed(0);
  torch::Tensor clean = torch::randn({500, 16}, torch::kDouble);
  torch::Tensor planted = torch::randn({50, 16}, torch::kDouble);
  planted.select(1, 5).add_(6.0);
  torch::Tensor other = torch::randn({200, 16}, torch::kDouble);
  const torch::Tensor features = torch::cat({clean, planted, other});
  const torch::Tensor labels =
      torch::cat({torch::full({550}, 3, torch::kLong), torch::full({200}, 1, torch::kLong)});
  const InspectionResult r = spectral_signatures(features, labels, 0.1);
  ASSERT_EQ(r.classes.size(), 2u);
  EXPECT_EQ(r.classes[0].label, 1);
  EXPECT_EQ(r.classes[0].suspects, 30);
  EXPECT_EQ(r.classes[1].suspects, 82);
  const DetectionRates rates = detection_rates(r.suspects, torch::arange(500, 550), 750);
  EXPECT_EQ(rates.true_positives, 50);
  EXPECT_DOUBLE_EQ(rates.tpr, 100.0);
  EXPECT_EQ(rates.false_positives, 62);
  EXPECT_NEAR(rates.fpr, 100.0 * 62 / 700, 1e-9);
}

// Two blobs, 160 and 40 rows: 2-means separates them exactly.
TEST(DataInspection, TwoMeansSplitsTwoBlobs) {
  torch::manual_seed(1);
  const torch::Tensor a = torch::randn({160, 3}, torch::kDouble);
  const torch::Tensor b = torch::randn({40, 3}, torch::kDouble) + 8.0;
  const torch::Tensor clusters = two_means(torch::cat({a, b}), 0);
  const int64_t first = clusters[0].item<int64_t>();
  EXPECT_TRUE(torch::all(clusters.slice(0, 0, 160) == first).item<bool>());
  EXPECT_TRUE(torch::all(clusters.slice(0, 160) == 1 - first).item<bool>());
}

// FastICA's sources are white: unit variance and uncorrelated.
TEST(DataInspection, FastIcaSourcesAreWhite) {
  torch::manual_seed(2);
  const torch::Tensor s = torch::rand({400, 3}, torch::kDouble) - 0.5;  // independent, uniform
  const torch::Tensor mix =
      torch::tensor({{1.0, 0.5, 0.0}, {0.2, 1.0, 0.3}, {0.0, 0.4, 1.0}}, torch::kDouble);
  const torch::Tensor sources = fast_ica(s.mm(mix), 3, 0);
  ASSERT_EQ(sources.sizes(), (std::vector<int64_t>{400, 3}));
  const torch::Tensor centred = sources - sources.mean(0, true);
  const torch::Tensor covariance = centred.t().mm(centred) / 400.0;
  EXPECT_TRUE(torch::allclose(covariance, torch::eye(3, torch::kDouble), 1e-6, 1e-6)) << covariance;
  // Each source is one of the originals (up to sign and scale): |correlation| near 1.
  const torch::Tensor sc = s - s.mean(0, true);
  const torch::Tensor corr = (centred.t().mm(sc) / 400.0) / (sc.std(0, false, false) + 1e-12);
  EXPECT_GT(std::get<0>(corr.abs().max(1)).min().item<double>(), 0.95) << corr;
}

// Activation Clustering flags the smaller cluster of a class when it is under the size
// threshold, and nothing in a class without one.
TEST(DataInspection, ActivationClusteringFlagsTheSmallerCluster) {
  torch::manual_seed(3);
  torch::Tensor clean = torch::randn({300, 12}, torch::kDouble);
  torch::Tensor planted = torch::randn({60, 12}, torch::kDouble);
  planted.slice(1, 0, 3).add_(10.0);
  const torch::Tensor features = torch::cat({clean, planted});
  const torch::Tensor labels = torch::full({360}, 0, torch::kLong);
  const InspectionResult r = activation_clustering(features, labels, 0, 10, 0.35);
  const DetectionRates rates = detection_rates(r.suspects, torch::arange(300, 360), 360);
  EXPECT_EQ(rates.true_positives, 60);
  EXPECT_EQ(rates.false_positives, 0);
  EXPECT_NEAR(r.classes[0].statistic, 60.0 / 360.0, 1e-9);
}

}  // namespace
}  // namespace nad::defenses
