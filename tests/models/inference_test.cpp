#include "nad/models/inference.h"

#include <gtest/gtest.h>

#include "nad/models/classifier.h"

namespace nad::models {
namespace {

// Restores the inference path's switch when a test ends.
struct InferencePathSwitch {
  ~InferencePathSwitch() { set_inference_path_enabled(true); }
};

// Gives every BatchNorm statistics and affine parameters away from the identity, so that
// folding them is visible.
void randomise_batch_norms(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& module : model.modules(/*include_self=*/false)) {
    if (auto* bn = module->as<BatchNorm2dImpl>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.3, 0.3);
    }
  }
}

TEST(InferencePath, ConvThenBatchNormEqualsTheTwoLayers) {
  torch::manual_seed(3);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 3).stride(2).padding(1).bias(true));
  BatchNorm2d bn(4);
  randomise_batch_norms(*bn);
  bn->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({2, 3, 9, 9});
  const torch::Tensor expected = bn->forward(conv->forward(x));
  // By hand for one output: (conv - mean) / sqrt(var + eps) * weight + bias.
  const double by_hand =
      (conv->forward(x)[1][2][3][4].item<double>() - bn->running_mean[2].item<double>()) /
          std::sqrt(bn->running_var[2].item<double>() + 1e-5) * bn->weight[2].item<double>() +
      bn->bias[2].item<double>();
  const torch::Tensor folded = conv_then_batch_norm(*conv, *bn, x, 1);
  EXPECT_TRUE(torch::allclose(folded, expected, 1e-5, 1e-5));
  EXPECT_NEAR(folded[1][2][3][4].item<double>(), by_hand, 1e-5);
  bn->train();
  EXPECT_THROW(conv_then_batch_norm(*conv, *bn, x, 1), std::logic_error);
}

// The folded weights are kept between calls, and made again whenever a source changes: an
// in-place write to the convolution or the BatchNorm, weights copied in, a move to another
// memory format, or another module at the same place.
TEST(InferencePath, FoldedWeightsFollowEveryChangeOfTheirSources) {
  torch::manual_seed(5);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 3).padding(1).bias(false));
  BatchNorm2d bn(4);
  randomise_batch_norms(*bn);
  bn->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({2, 3, 6, 6});
  auto expect_two_layers = [&](const char* what) {
    EXPECT_TRUE(torch::allclose(conv_then_batch_norm(*conv, *bn, x, 1),
                                bn->forward(conv->forward(x)), 1e-5, 1e-5))
        << what;
  };
  expect_two_layers("first call");
  expect_two_layers("second call (kept)");
  conv->weight.mul_(2);
  expect_two_layers("conv weight written in place");
  bn->running_var.add_(1);
  expect_two_layers("running variance written in place");
  bn->bias.sub_(0.25);
  expect_two_layers("bias written in place");
  torch::nn::Conv2d other(torch::nn::Conv2dOptions(3, 4, 3).padding(1).bias(false));
  conv->weight.copy_(other->weight);
  expect_two_layers("weights copied in");
  conv->weight.set_data(conv->weight.data().contiguous(at::MemoryFormat::ChannelsLast));
  expect_two_layers("channels-last");
  conv->weight.unsafeGetTensorImpl()->bump_version();  // as after a distributed broadcast
  expect_two_layers("version raised");
}

TEST(InferencePath, TakenOnlyInEvaluationWithoutGradients) {
  InferencePathSwitch restore;
  Classifier model = create_model({"wrn-16-1", 3, 10, 32, 32});
  EXPECT_FALSE(takes_inference_path(*model));  // training mode
  model->eval();
  EXPECT_FALSE(takes_inference_path(*model));  // gradients on
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(takes_inference_path(*model));
  set_inference_path_enabled(false);
  EXPECT_FALSE(takes_inference_path(*model));
}

// Each architecture's inference path gives the layer-by-layer result (rounding aside), features
// and logits alike, and leaves its input untouched.
TEST(InferencePath, EveryArchitectureMatchesItsLayerByLayerForward) {
  InferencePathSwitch restore;
  for (const char* arch : {"wrn-16-1", "wrn-16-2", "preact-resnet18", "resnet18", "mnist-cnn"}) {
    SCOPED_TRACE(arch);
    const bool mnist = std::string(arch) == "mnist-cnn";
    torch::manual_seed(11);
    Classifier model = create_model({arch, mnist ? 1 : 3, 10, mnist ? 28 : 32, mnist ? 28 : 32});
    randomise_batch_norms(*model);
    model->eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::rand({3, mnist ? 1 : 3, mnist ? 28 : 32, mnist ? 28 : 32});
    const torch::Tensor input = x.clone();
    set_inference_path_enabled(false);
    const ModelOutput layered = model->forward(x);
    set_inference_path_enabled(true);
    const ModelOutput fused = model->forward(x);
    EXPECT_TRUE(torch::equal(x, input));
    ASSERT_EQ(fused.features.size(), layered.features.size());
    for (size_t g = 0; g < fused.features.size(); ++g) {
      EXPECT_TRUE(torch::allclose(fused.features[g], layered.features[g], 1e-4, 1e-4)) << g;
    }
    EXPECT_TRUE(torch::allclose(fused.logits, layered.logits, 1e-4, 1e-4));
    // Not trivially equal: the BatchNorms changed the activations.
    EXPECT_GT(layered.logits.abs().max().item<double>(), 1e-3);
  }
}

}  // namespace
}  // namespace nad::models
