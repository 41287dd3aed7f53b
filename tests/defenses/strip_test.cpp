#include "nad/defenses/strip.h"

#include <gtest/gtest.h>

#include "nad/util/threads.h"
#include "support/thread_count.h"
#include "support/user_error.h"

namespace nad::defenses {
namespace {

// A two-class model whose softmax is (v, 1 - v), v the input's mean pixel: its logits are
// (log v, log(1 - v)). The STRIP entropy of an input is then hand-computable.
class MeanPixelImpl : public models::ClassifierImpl {
 public:
  models::ModelOutput forward_normalised(const torch::Tensor& inputs) override {
    const torch::Tensor v = inputs.flatten(1).mean(1);
    return {{}, torch::stack({v.log(), (1 - v).log()}, 1)};
  }
  std::vector<std::string> group_names() const override { return {}; }
};

torch::Tensor constant_images(const std::vector<int64_t>& values) {
  return torch::tensor(values, torch::kLong)
      .to(torch::kUInt8)
      .view({-1, 1, 1, 1})
      .expand({static_cast<int64_t>(values.size()), 2, 2, 1})
      .contiguous();
}

// Superimposes two 1 x 2 one-channel images (100, 0 and 255, 10) with three overlays (201, 0;
// 0, 255; 50, 50) and compares row m * 3 + n with `expected`.
void expect_superimposed(Superimpose mode, const float (&expected)[6][2]) {
  const torch::Tensor images = torch::tensor({100, 0, 255, 10}, torch::kUInt8).view({2, 1, 2, 1});
  const torch::Tensor overlays =
      torch::tensor({201, 0, 0, 255, 50, 50}, torch::kUInt8).view({3, 1, 2, 1});
  const torch::Tensor mixed = superimpose(images, overlays, mode);
  ASSERT_EQ(mixed.sizes(), (std::vector<int64_t>{6, 1, 1, 2}));
  for (int r = 0; r < 6; ++r) {
    for (int x = 0; x < 2; ++x) {
      EXPECT_NEAR(mixed[r][0][0][x].item<float>(), expected[r][x], 1e-7) << r << "," << x;
    }
  }
}

TEST(Strip, AddsSaturatingAt255AsThePaperCode) {
  // min(image + overlay, 255) / 255: 301, 456, 305 and 265 saturate at 255.
  const float expected[6][2] = {{1, 0},          {100 / 255.f, 1}, {150 / 255.f, 50 / 255.f},
                                {1, 10 / 255.f}, {1, 1},           {1, 60 / 255.f}};
  expect_superimposed(Superimpose::kAdd, expected);
}

TEST(Strip, BlendsHalfAndHalfOnThe255ScaleWithoutRounding) {
  // (image + overlay) / 2 / 255; 301 / 510 is no uint8 value over 255.
  const float expected[6][2] = {{301 / 510.f, 0},           {100 / 510.f, 255 / 510.f},
                                {150 / 510.f, 50 / 510.f},  {456 / 510.f, 10 / 510.f},
                                {255 / 510.f, 265 / 510.f}, {305 / 510.f, 60 / 510.f}};
  expect_superimposed(Superimpose::kBlend, expected);
}

// H(v) = -(v log2 v + (1 - v) log2 (1 - v)), by hand.
constexpr double kH02 = 0.7219280948873623, kH04 = 0.9709505944546686, kH06 = kH04, kH05 = 1.0,
                 kH09 = 0.4689955935892812;

TEST(Strip, MeanOfEntropiesAsThePaperOnAHandMadeTwoClassModel) {
  models::Classifier model = std::make_shared<MeanPixelImpl>();
  const torch::Tensor images = constant_images({102, 255});
  const torch::Tensor overlays = constant_images({0, 204});
  // The paper's: added, saturating. Image 102 with overlays 0 and 204 gives v = 0.4 and
  // min(306, 255) / 255 = 1 (entropy 0): (H(0.4) + 0) / 2. Image 255 gives v = 1 with both
  // overlays: 0.
  // The default.
  const StripMethod paper;
  EXPECT_EQ(paper.superimpose, Superimpose::kAdd);
  EXPECT_EQ(paper.entropy, StripEntropy::kMeanOfEntropies);
  const torch::Tensor added = strip_entropy(model, images, overlays, 64);
  ASSERT_EQ(added.numel(), 2);
  EXPECT_EQ(added.scalar_type(), torch::kDouble);
  EXPECT_NEAR(added[0].item<double>(), kH04 / 2, 1e-5);
  EXPECT_NEAR(added[1].item<double>(), 0.0, 1e-6);
  // Blended half and half: v = 0.2 and 0.6 for image 102, 0.5 and 0.9 for image 255.
  StripMethod blend = paper;
  blend.superimpose = Superimpose::kBlend;
  const torch::Tensor blended = strip_entropy(model, images, overlays, 64, blend);
  EXPECT_NEAR(blended[0].item<double>(), (kH02 + kH06) / 2, 1e-5);
  EXPECT_NEAR(blended[1].item<double>(), (kH05 + kH09) / 2, 1e-5);
}

TEST(Strip, EntropyOfTheMeanPredictionOnAHandMadeTwoClassModel) {
  models::Classifier model = std::make_shared<MeanPixelImpl>();
  // Image 102 with overlays 0 and 204 blends to v = 0.2 and 0.6: mean softmax (0.4, 0.6),
  // H = -(0.4 log2 0.4 + 0.6 log2 0.6). Image 255: v = 0.5 and 0.9, mean (0.7, 0.3).
  const torch::Tensor images = constant_images({102, 255});
  const torch::Tensor overlays = constant_images({0, 204});
  // Blended half and half, the entropy of the mean softmax.
  StripMethod of_mean;
  of_mean.superimpose = Superimpose::kBlend;
  of_mean.entropy = StripEntropy::kEntropyOfMean;
  const torch::Tensor entropy = strip_entropy(model, images, overlays, 64, of_mean);
  ASSERT_EQ(entropy.numel(), 2);
  EXPECT_EQ(entropy.scalar_type(), torch::kDouble);
  EXPECT_NEAR(entropy[0].item<double>(), 0.9709505944546686, 1e-5);
  EXPECT_NEAR(entropy[1].item<double>(), 0.8812908992306927, 1e-5);
  // Not the paper's mean of per-overlay entropies, (H(0.2) + H(0.6)) / 2 = 0.8464.
  EXPECT_GT(entropy[0].item<double>() - 0.8464393446710154, 0.1);
  // A blend every overlay sends to one class with certainty has entropy 0 (0 log 0 = 0): an
  // image of 255 over an overlay of 255 gives v = 1, softmax (1, 0).
  EXPECT_NEAR(strip_entropy(model, constant_images({255}), constant_images({255}), 8, of_mean)
                  .item<double>(),
              0.0, 1e-6);
}

class StripThreads : public KeepsThreadCount {};

TEST_F(StripThreads, EntropyIsTheSameForAnyBatchSizeAndWorkers) {
  torch::manual_seed(5);
  models::Classifier model = models::create_model({"mnist-cnn", 1, 4, 8, 8});
  const torch::Tensor images = torch::randint(0, 256, {7, 8, 8, 1}, torch::kUInt8);
  const torch::Tensor overlays = torch::randint(0, 256, {5, 8, 8, 1}, torch::kUInt8);
  set_threads(1);
  const torch::Tensor one_by_one = strip_entropy(model, images, overlays, 1);
  set_threads(2);
  for (int64_t batch : {5, 12, 64}) {
    const torch::Tensor batched = strip_entropy(model, images, overlays, batch);
    EXPECT_TRUE(torch::allclose(batched, one_by_one, 1e-6, 1e-9)) << batch;
  }
  // Each entropy is that of its image alone (the default: the mean over the added overlays of
  // each blend's entropy).
  torch::NoGradGuard no_grad;
  model->eval();
  const torch::Tensor p =
      torch::softmax(
          model->forward(superimpose(images.slice(0, 3, 4), overlays, Superimpose::kAdd)).logits, 1)
          .to(torch::kDouble);
  EXPECT_NEAR(one_by_one[3].item<double>(), -(p * p.log2()).sum(1).mean().item<double>(), 1e-6);
  EXPECT_GT(one_by_one.max().item<double>(), 0);
  EXPECT_LE(one_by_one.max().item<double>(), 2.0 + 1e-9);  // log2 of 4 classes
}

TEST(Strip, ThresholdIsTheFrrQuantileOfAHandMadeList) {
  const torch::Tensor clean =
      torch::tensor({0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0}, torch::kDouble);
  // k = floor(frr * 10): the k-th smallest (0-based) is the threshold, flagging k entropies.
  EXPECT_DOUBLE_EQ(strip_threshold(clean, 0.1), 0.2);
  EXPECT_DOUBLE_EQ(strip_threshold(clean, 0.25), 0.3);
  EXPECT_DOUBLE_EQ(strip_threshold(clean, 0.05), 0.1);  // k = 0: nothing flagged
  EXPECT_DOUBLE_EQ(strip_threshold(clean, 0.0), 0.1);
  EXPECT_DOUBLE_EQ(strip_threshold(clean, 0.3), 0.4);   // 0.3 * 10 stays 3
  EXPECT_DOUBLE_EQ(strip_threshold(clean, 0.99), 1.0);  // k = 9
  EXPECT_DOUBLE_EQ(percent_flagged(clean, 0.3), 20.0);  // 0.1 and 0.2
  EXPECT_DOUBLE_EQ(percent_flagged(clean, 0.1), 0.0);
  // FAR: the triggered entropies at or above the threshold are accepted.
  const torch::Tensor triggered = torch::tensor({0.05, 0.15, 0.3, 0.35}, torch::kDouble);
  EXPECT_DOUBLE_EQ(percent_accepted(triggered, 0.3), 50.0);  // 0.3 and 0.35
  EXPECT_EQ(strip_flags(triggered, 0.3).to(torch::kLong).sum().item<int64_t>(), 2);
  // Ties: three equal lowest entropies at frr 0.5 give threshold 0.2, which flags none of
  // them, since flagging all three would pass 50%.
  const torch::Tensor tied = torch::tensor({0.2, 0.5, 0.2, 0.2}, torch::kDouble);
  EXPECT_DOUBLE_EQ(strip_threshold(tied, 0.5), 0.2);
  EXPECT_DOUBLE_EQ(percent_flagged(tied, 0.2), 0.0);
}

TEST(Strip, ThresholdRefusesNoCleanInputsAndABadFrr) {
  test::expect_user_error([] { strip_threshold(torch::empty({0}, torch::kDouble), 0.01); },
                          {"clean inputs"});
  const torch::Tensor clean = torch::tensor({0.5, 0.6}, torch::kDouble);
  test::expect_user_error([&] { strip_threshold(clean, 1.0); }, {"--frr"});
  test::expect_user_error([&] { strip_threshold(clean, -0.1); }, {"--frr"});
}

}  // namespace
}  // namespace nad::defenses
