#include "nad/defenses/prune.h"

#include <gtest/gtest.h>

#include "nad/data/augment.h"
#include "nad/util/error.h"

namespace nad::defenses {
namespace {

namespace F = torch::nn::functional;

models::Classifier small_cnn() {
  torch::manual_seed(3);
  return models::create_model({"mnist-cnn", 1, 4, 8, 8});
}

// mnist-cnn's forward written out with the channels of conv2's output in `dropped` set to 0.
torch::Tensor logits_with_channels_zeroed(const models::Classifier& model,
                                          const torch::Tensor& inputs,
                                          const std::vector<int64_t>& dropped) {
  auto p = model->named_parameters();
  torch::Tensor x = torch::relu(
      torch::conv2d(inputs, p["conv1.weight"], p["conv1.bias"], 1, torch::IntArrayRef{1}));
  x = torch::max_pool2d(x, 2);
  x = torch::relu(torch::conv2d(x, p["conv2.weight"], p["conv2.bias"], 1, torch::IntArrayRef{1}));
  for (int64_t c : dropped) x.select(1, c).zero_();
  x = torch::max_pool2d(x, 2).flatten(1);
  x = torch::relu(F::linear(x, p["fc1.weight"], p["fc1.bias"]));
  return F::linear(x, p["fc2.weight"], p["fc2.bias"]);
}

TEST(Prune, MaskedModelMatchesZeroedChannels) {
  models::Classifier model = small_cnn();
  model->eval();
  torch::Tensor inputs = torch::rand({5, 1, 8, 8});
  const std::vector<int64_t> dropped{0, 5, 17, 63};
  torch::NoGradGuard no_grad;
  const torch::Tensor expected = logits_with_channels_zeroed(model, inputs, dropped);
  torch::Tensor keep = torch::ones({64}, torch::kBool);
  for (int64_t c : dropped) keep[c] = false;
  apply_channel_mask(model, keep);
  EXPECT_TRUE(torch::allclose(model->forward(inputs).logits, expected, 1e-5, 1e-6));
  // Only fc1's columns of the dropped channels (2 x 2 positions each) are zero.
  torch::Tensor w = model->named_parameters()["fc1.weight"].view({128, 64, 4});
  for (int64_t c = 0; c < 64; ++c) {
    const bool zero = w.select(1, c).eq(0).all().item<bool>();
    EXPECT_EQ(zero, !keep[c].item<bool>()) << c;
  }
}

// --prune-layer's mask: zeroing a convolution's own rows and bias removes its output channels,
// the same logits as zeroing them after the ReLU (relu(0) = 0).
TEST(Prune, MaskOnALayersOwnRowsMatchesZeroedChannels) {
  models::Classifier model = small_cnn();
  model->eval();
  torch::Tensor inputs = torch::rand({5, 1, 8, 8});
  const std::vector<int64_t> dropped{1, 2, 40};
  torch::NoGradGuard no_grad;
  const torch::Tensor expected = logits_with_channels_zeroed(model, inputs, dropped);
  torch::Tensor keep = torch::ones({64}, torch::kBool);
  for (int64_t c : dropped) keep[c] = false;
  apply_channel_mask(model, keep, {{"conv2.weight", 0}, {"conv2.bias", 0}});
  EXPECT_TRUE(torch::allclose(model->forward(inputs).logits, expected, 1e-5, 1e-6));
  auto p = model->named_parameters();
  for (int64_t c = 0; c < 64; ++c) {
    EXPECT_EQ(p["conv2.weight"][c].eq(0).all().item<bool>(), !keep[c].item<bool>()) << c;
    EXPECT_EQ(p["conv2.bias"][c].item<float>() == 0, !keep[c].item<bool>()) << c;
  }
}

// The default target is the last group; a named layer must be a convolution or BatchNorm, and
// nad's own architectures cannot give a layer's output other than their groups'.
TEST(Prune, TargetLayerIsCheckedAgainstTheModel) {
  models::Classifier model = small_cnn();
  const models::ModelSpec spec{"mnist-cnn", 1, 4, 8, 8};
  const PruneTarget target = prune_target(model, spec, "");
  EXPECT_EQ(target.layer, model->group_names().back());
  ASSERT_EQ(target.weights.size(), 1u);
  EXPECT_EQ(target.weights[0].name, "fc1.weight");
  EXPECT_EQ(target.weights[0].axis, 1);
  try {
    prune_target(model, spec, "fc1");
    FAIL() << "fc1 is not a convolution";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--prune-layer fc1 is not a convolution"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("conv1, conv2"), std::string::npos) << e.what();
  }
  try {
    prune_target(model, spec, "conv1");
    FAIL() << "mnist-cnn cannot expose conv1's output";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("prunes its last group"), std::string::npos) << e.what();
  }
}

CleanData random_clean(int64_t train, int64_t validation) {
  CleanData clean;
  clean.train = {torch::randint(0, 256, {train, 8, 8, 1}, torch::kUInt8),
                 torch::randint(0, 4, {train}, torch::kLong)};
  clean.validation = {torch::randint(0, 256, {validation, 8, 8, 1}, torch::kUInt8),
                      torch::randint(0, 4, {validation}, torch::kLong)};
  clean.indices = torch::arange(train + validation, torch::kLong);
  return clean;
}

TEST(Prune, PrunesTheLeastActiveChannelsItReports) {
  models::Classifier model = small_cnn();
  const torch::Tensor original = model->named_parameters()["fc1.weight"].clone();
  CleanData clean = random_clean(30, 20);
  PruneOptions options;
  options.max_acc_drop = 100;  // never binds: the ratio stops it
  options.prune_ratio = 0.5;
  PruneResult result =
      prune_channels(model, {"mnist-cnn", 1, 4, 8, 8}, clean, options, torch::kCPU);
  ASSERT_EQ(result.pruned, 32);
  ASSERT_EQ(result.path.size(), 33u);  // 0..32 channels
  // The order is by mean activation over the clean training images, hand-measured here.
  torch::Tensor activation;
  {
    torch::NoGradGuard no_grad;
    model->eval();
    activation = model->forward(data::to_input(clean.train.images)).features.back().mean({0, 2, 3});
  }
  EXPECT_TRUE(torch::allclose(result.activation.to(torch::kFloat), activation, 1e-5, 1e-6));
  torch::Tensor sorted = result.activation.index_select(0, result.order);
  EXPECT_TRUE((sorted.slice(0, 1) >= sorted.slice(0, 0, -1)).all().item<bool>());
  for (int64_t k = 0; k < 64; ++k) {
    EXPECT_EQ(result.keep[result.order[k].item<int64_t>()].item<bool>(), k >= 32);
  }
  // The pruned copy is masked; the original is untouched.
  torch::Tensor keep_f = result.keep.to(torch::kFloat).view({1, 64, 1});
  EXPECT_TRUE(result.model->named_parameters()["fc1.weight"]
                  .view({128, 64, 4})
                  .equal(original.view({128, 64, 4}) * keep_f));
  EXPECT_TRUE(model->named_parameters()["fc1.weight"].equal(original));

  // No accuracy loss allowed: pruning stops at the first channel that costs hold-out accuracy.
  options.max_acc_drop = 0;
  options.prune_ratio = 1;
  PruneResult strict =
      prune_channels(model, {"mnist-cnn", 1, 4, 8, 8}, clean, options, torch::kCPU);
  for (const auto& point : strict.path) EXPECT_GE(point.val_acc, strict.baseline_val_acc);
}

}  // namespace
}  // namespace nad::defenses
