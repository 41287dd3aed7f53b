#include "nad/defenses/clp.h"

#include <gtest/gtest.h>

#include "nad/util/error.h"

namespace nad::defenses {
namespace {

// Bounds worked by hand: the largest singular value of each channel's (in x k*k) kernel, times
// |gamma| / sqrt(running_var).
TEST(Clp, BoundsMatchHandComputedChannels) {
  torch::Tensor conv = torch::zeros({3, 2, 2, 2}, torch::kDouble);
  // Channel 0: rows (3, 0, 0, 0) and (4, 0, 0, 0): rank one, singular value 5.
  conv[0][0][0][0] = 3;
  conv[0][1][0][0] = 4;
  // Channel 1: rows (1, 0, 0, 0) and (0, 2, 0, 0): singular values 2 and 1.
  conv[1][0][0][0] = 1;
  conv[1][1][0][1] = 2;
  // Channel 2: rows (1, 2, 2, 0) and (0, 0, 0, 0): singular value 3.
  conv[2][0][0][0] = 1;
  conv[2][0][0][1] = 2;
  conv[2][0][1][0] = 2;
  const torch::Tensor gamma = torch::tensor({-2.0, 1.0, 1.0}, torch::kDouble);
  const torch::Tensor var = torch::tensor({4.0, 1.0, 9.0}, torch::kDouble);
  const torch::Tensor bounds = channel_lipschitz_bounds(conv.to(torch::kFloat), gamma, var);
  ASSERT_EQ(bounds.size(0), 3);
  EXPECT_NEAR(bounds[0].item<double>(), 5.0, 1e-6);  // 5 * |-2| / 2
  EXPECT_NEAR(bounds[1].item<double>(), 2.0, 1e-6);  // 2 * 1 / 1
  EXPECT_NEAR(bounds[2].item<double>(), 1.0, 1e-6);  // 3 * 1 / 3
}

// A channel with an outlying gamma is pruned (its BatchNorm weight and bias zeroed) and nothing
// else in its layer; BatchNorms pair with the convolution registered before them; the original
// model is untouched.
TEST(Clp, PrunesTheOutlyingChannelOfACopy) {
  torch::manual_seed(0);
  const models::ModelSpec spec{"wrn-16-1", 3, 10, 32, 32};
  models::Classifier model = models::create_model(spec);
  {
    torch::NoGradGuard no_grad;
    auto p = model->named_parameters();
    p["block2.layer.0.bn2.weight"][3].fill_(100.0);
    p["block2.layer.0.bn2.bias"].fill_(0.5);
  }
  const ClpResult result = clp_prune(model, spec, {});
  const ClpLayer* layer = nullptr;
  for (const auto& l : result.layers) {
    if (l.batch_norm == "block2.layer.0.bn2") layer = &l;
    if (l.batch_norm == "block1.layer.0.bn1") EXPECT_EQ(l.conv, "conv1");
  }
  ASSERT_NE(layer, nullptr);
  EXPECT_EQ(layer->conv, "block2.layer.0.conv1");
  EXPECT_EQ(layer->pruned, std::vector<int64_t>{3});
  auto pruned = result.model->named_parameters();
  for (int64_t c = 0; c < 32; ++c) {
    const bool zero = c == 3;
    EXPECT_EQ(pruned["block2.layer.0.bn2.weight"][c].item<float>() == 0, zero) << c;
    EXPECT_EQ(pruned["block2.layer.0.bn2.bias"][c].item<float>() == 0, zero) << c;
  }
  EXPECT_EQ(model->named_parameters()["block2.layer.0.bn2.weight"][3].item<float>(), 100.0f);
  EXPECT_GE(result.pruned, 1);
  EXPECT_GT(result.channels, 0);
}

TEST(Clp, AModelWithoutBatchNormIsRefused) {
  const models::ModelSpec spec{"mnist-cnn", 1, 4, 8, 8};
  EXPECT_THROW(clp_prune(models::create_model(spec), spec, {}), UserError);
}

}  // namespace
}  // namespace nad::defenses
