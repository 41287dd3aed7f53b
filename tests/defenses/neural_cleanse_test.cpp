// Neural Cleanse's parts: the outlier test, the trigger blend, and a reversal on a model whose
// backdoor is known exactly.
#include "nad/defenses/neural_cleanse.h"

#include <gtest/gtest.h>

#include <cmath>

#include "nad/util/error.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

TEST(NeuralCleanse, AnomalyIndexMatchesAHandComputedExample) {
  // Median 11; deviations 1, 1, 0, 2, 9 -> MAD 1; the scale is 1.4826.
  const defenses::AnomalyResult r = defenses::anomaly_index({10, 12, 11, 13, 2}, 2.0);
  EXPECT_DOUBLE_EQ(r.median, 11);
  EXPECT_DOUBLE_EQ(r.mad, 1);
  EXPECT_NEAR(r.index[0], 1 / 1.4826, 1e-12);
  EXPECT_NEAR(r.index[1], -1 / 1.4826, 1e-12);
  EXPECT_DOUBLE_EQ(r.index[2], 0);
  EXPECT_NEAR(r.index[3], -2 / 1.4826, 1e-12);
  EXPECT_NEAR(r.index[4], 9 / 1.4826, 1e-12);  // 6.07
  ASSERT_EQ(r.flagged.size(), 1u);
  EXPECT_EQ(r.flagged[0], 4);
  // Only classes below the median count: a huge norm is not a backdoor.
  EXPECT_TRUE(defenses::anomaly_index({10, 12, 11, 13, 90}, 2.0).flagged.empty());
}

TEST(NeuralCleanse, AnomalyIndexWithAnEvenCountAndSeveralOutliers) {
  // Median (3 + 20) / 2 = 11.5 of {1, 2, 3, 20, 21, 22}; deviations 10.5, 9.5, 8.5, 8.5, 9.5,
  // 10.5 -> MAD 9.5.
  const defenses::AnomalyResult r = defenses::anomaly_index({1, 2, 3, 20, 21, 22}, 0.6);
  EXPECT_DOUBLE_EQ(r.median, 11.5);
  EXPECT_DOUBLE_EQ(r.mad, 9.5);
  EXPECT_NEAR(r.index[0], 10.5 / (1.4826 * 9.5), 1e-12);  // 0.745
  EXPECT_NEAR(r.index[2], 8.5 / (1.4826 * 9.5), 1e-12);   // 0.603
  // Flagged by decreasing index.
  EXPECT_EQ(r.flagged, (std::vector<int64_t>{0, 1, 2}));
}

TEST(NeuralCleanse, AnomalyIndexOnLogNormsMatchesAHandComputedExample) {
  // Norms e^3, e^3.2, e^2.9, e^3.1, e^0.5: on their logarithms the median is 3, the deviations
  // 0, 0.2, 0.1, 0.1, 2.5 give MAD 0.1, and the last class's index is 2.5 / 0.14826 = 16.86.
  const std::vector<double> norms = {std::exp(3.0), std::exp(3.2), std::exp(2.9), std::exp(3.1),
                                     std::exp(0.5)};
  const defenses::AnomalyResult r =
      defenses::anomaly_index(norms, 2.0, defenses::AnomalyScale::kLog);
  EXPECT_NEAR(r.median, 3.0, 1e-12);
  EXPECT_NEAR(r.mad, 0.1, 1e-12);
  EXPECT_NEAR(r.index[4], 2.5 / (1.4826 * 0.1), 1e-9);
  EXPECT_NEAR(r.index[1], -0.2 / (1.4826 * 0.1), 1e-9);
  EXPECT_EQ(r.flagged, (std::vector<int64_t>{4}));
  // Norms below e^(3 - 2 * 0.14826) = 14.93 pixels are flagged.
  EXPECT_NEAR(r.flag_below(2.0), 14.931603395633633, 1e-9);
  // The same norms on the paper's linear scale: median e^3 = 20.09, MAD 2.112, index 5.89.
  const defenses::AnomalyResult linear = defenses::anomaly_index(norms, 2.0);
  EXPECT_NEAR(linear.index[4], 5.8868477877867305, 1e-9);
  EXPECT_NEAR(linear.flag_below(2.0), 20.085536923187668 - 2 * 1.4826 * 2.112414358253968, 1e-9);
}

TEST(NeuralCleanse, AnomalyIndexNeedsThreeClassesAndSurvivesAZeroMad) {
  EXPECT_THROW(defenses::anomaly_index({1, 2}, 2.0), UserError);
  const defenses::AnomalyResult same = defenses::anomaly_index({5, 5, 5, 5}, 2.0);
  EXPECT_DOUBLE_EQ(same.mad, 0);
  EXPECT_TRUE(same.flagged.empty());
  const defenses::AnomalyResult one = defenses::anomaly_index({5, 5, 5, 1}, 2.0);
  EXPECT_EQ(one.flagged, (std::vector<int64_t>{3}));
}

TEST(NeuralCleanse, StampBlendsMaskAndPatternOnTheByteScale) {
  // One 1 x 2 RGB image: pixel 0 = (100, 0, 200), pixel 1 = (10, 20, 30).
  torch::Tensor image = torch::tensor({100, 0, 200, 10, 20, 30}, torch::kUInt8).view({1, 1, 2, 3});
  torch::Tensor mask = torch::tensor({0.25f, 1.0f}).view({1, 2});
  torch::Tensor pattern = torch::tensor({255.f, 255.f, 255.f, 0.f, 50.f, 100.f}).view({1, 2, 3});
  const torch::Tensor input = defenses::stamp_reversed(image, mask, pattern).contiguous();
  ASSERT_EQ(input.sizes(), (std::vector<int64_t>{1, 3, 1, 2}));
  // (1 - 0.25) * 100 + 0.25 * 255 = 138.75; pixel 1 is the pattern alone.
  EXPECT_NEAR(input[0][0][0][0].item<float>(), 138.75f / 255, 1e-6);
  EXPECT_NEAR(input[0][1][0][0].item<float>(), 63.75f / 255, 1e-6);
  EXPECT_NEAR(input[0][2][0][0].item<float>(), 213.75f / 255, 1e-6);
  EXPECT_NEAR(input[0][0][0][1].item<float>(), 0.f, 1e-6);
  EXPECT_NEAR(input[0][1][0][1].item<float>(), 50.f / 255, 1e-6);
  EXPECT_NEAR(input[0][2][0][1].item<float>(), 100.f / 255, 1e-6);
}

// A fixed model on 6 x 6 one-channel images with triggers of known sizes: class 0 fires when the
// bottom-right pixel is bright, classes 1 and 2 when every pixel of a 2 x 3 block at the top is;
// anything else goes to class 3. A smooth threshold keeps gradients everywhere.
class PlantedModelImpl : public models::ClassifierImpl {
 public:
  PlantedModelImpl() { dummy_ = register_parameter("dummy", torch::zeros({1})); }
  models::ModelOutput forward_normalised(const torch::Tensor& inputs) override {
    const torch::Tensor x = inputs.select(1, 0);  // N x 6 x 6 in [0, 1]
    auto fires = [](const torch::Tensor& darkest) {
      return torch::nn::functional::softplus(20 * (darkest - 0.7));
    };
    const torch::Tensor corner = x.select(1, 5).select(1, 5);
    const torch::Tensor left = x.slice(1, 0, 2).slice(2, 0, 3).flatten(1).amin(1);
    const torch::Tensor right = x.slice(1, 0, 2).slice(2, 3, 6).flatten(1).amin(1);
    const torch::Tensor logits =
        torch::stack({fires(corner), fires(left), fires(right), torch::ones_like(corner)}, 1);
    return {{inputs}, logits + 0 * dummy_};
  }
  std::vector<std::string> group_names() const override { return {"input"}; }

 private:
  torch::Tensor dummy_;
};

data::Dataset mid_grey_images(int64_t n) {
  data::Dataset set;
  set.images = torch::randint(100, 160, {n, 6, 6, 1}, torch::kLong).to(torch::kUInt8);
  set.labels = torch::arange(n, torch::kLong).remainder(4);
  return set;
}

TEST(NeuralCleanse, ReversesTriggersOfKnownSizes) {
  torch::manual_seed(0);
  const data::Dataset clean = mid_grey_images(64), holdout = mid_grey_images(40);
  auto model = std::make_shared<PlantedModelImpl>();
  defenses::NeuralCleanseOptions options;
  options.epochs = 40;
  options.quiet = true;
  std::vector<int64_t> finished;
  const std::vector<defenses::ReversedTrigger> triggers = defenses::reverse_triggers(
      model, 4, clean, holdout, options,
      [&](const defenses::ReversedTrigger& t) { finished.push_back(t.target); });
  ASSERT_EQ(triggers.size(), 4u);
  for (const auto& t : triggers) {
    EXPECT_TRUE(t.reached) << t.target;
    EXPECT_GE(t.success, 99.0) << t.target;
    EXPECT_EQ(t.mask.sizes(), (std::vector<int64_t>{6, 6}));
    EXPECT_EQ(t.pattern.sizes(), (std::vector<int64_t>{6, 6, 1}));
  }
  // One pixel for class 0, on the corner; six for each block; nothing for the default class.
  EXPECT_LT(triggers[0].norm, 1.5);
  EXPECT_GT(triggers[0].mask[5][5].item<double>(), 0.3);
  EXPECT_GT(triggers[1].norm, 2.5);
  EXPECT_GT(triggers[1].mask.slice(0, 0, 2).slice(1, 0, 3).min().item<double>(), 0.2);
  EXPECT_GT(triggers[2].norm, 2.5);
  EXPECT_LT(triggers[3].norm, 0.5);
  EXPECT_EQ(finished.size(), 4u);
}

}  // namespace
}  // namespace nad::test
