// Precision and memory-format settings: autocast only inside a scope and only for bf16, the
// cache of cast weights never serves stale weights, and channels-last conversion.
#include "nad/util/compute.h"

#include <gtest/gtest.h>

#include "nad/data/augment.h"
#include "nad/models/classifier.h"
#include "nad/util/error.h"

namespace nad {
namespace {

// Restores the process-wide options after each test.
class Compute : public ::testing::Test {
 protected:
  void TearDown() override { set_compute_options(ComputeOptions{}); }
};

TEST_F(Compute, ParsesPrecision) {
  EXPECT_EQ(parse_precision("fp32"), Precision::kFp32);
  EXPECT_EQ(parse_precision("bf16"), Precision::kBf16);
  EXPECT_EQ(precision_name(Precision::kBf16), "bf16");
  EXPECT_THROW(parse_precision("fp8"), UserError);
}

TEST_F(Compute, AutocastOnlyInsideABf16Scope) {
  torch::Tensor x = torch::rand({2, 3, 8, 8});
  torch::Tensor w = torch::rand({4, 3, 3, 3});
  {
    AutocastScope scope(torch::kCPU);  // fp32: does nothing
    EXPECT_EQ(torch::conv2d(x, w).scalar_type(), torch::kFloat);
  }
  ComputeOptions options;
  options.precision = Precision::kBf16;
  set_compute_options(options);
  {
    AutocastScope scope(torch::kCPU);
    EXPECT_EQ(torch::conv2d(x, w).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(torch::conv2d(x, w).scalar_type(), torch::kFloat);
}

TEST_F(Compute, EachScopeSeesTheCurrentWeights) {
  ComputeOptions options;
  options.precision = Precision::kBf16;
  set_compute_options(options);
  torch::nn::Linear layer(4, 1);
  torch::Tensor input = torch::ones({1, 4});
  {
    AutocastScope scope(torch::kCPU);
    layer->forward(input);  // caches a bf16 copy of the weight
  }
  {
    torch::NoGradGuard no_grad;
    layer->weight.fill_(1);
    layer->bias.fill_(0);
  }
  AutocastScope scope(torch::kCPU);
  EXPECT_FLOAT_EQ(layer->forward(input).to(torch::kFloat).item<float>(), 4.0f);
}

TEST_F(Compute, ChannelsLastLayout) {
  torch::Tensor images = torch::randint(0, 256, {2, 5, 6, 3}, torch::kUInt8);
  torch::Tensor input = data::to_input(images);
  EXPECT_EQ(input.sizes(), (std::vector<int64_t>{2, 3, 5, 6}));
  EXPECT_TRUE(input.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(input, images.permute({0, 3, 1, 2}).to(torch::kFloat) / 255.0));
  models::Classifier model = models::create_model({"wrn-16-1", 3, 10, 32, 32});
  for (const auto& p : model->parameters()) {
    if (p.dim() == 4) EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
  }

  ComputeOptions options;
  options.channels_last = false;
  set_compute_options(options);
  EXPECT_TRUE(data::to_input(images).is_contiguous());
  models::Classifier plain = models::create_model({"wrn-16-1", 3, 10, 32, 32});
  for (const auto& p : plain->parameters()) EXPECT_TRUE(p.is_contiguous());
}

}  // namespace
}  // namespace nad
