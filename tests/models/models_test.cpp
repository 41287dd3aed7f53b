#include <gtest/gtest.h>

#include <set>

#include "nad/models/classifier.h"
#include "nad/models/registry.h"
#include "nad/util/error.h"

namespace nad::models {
namespace {

std::set<std::string> state_names(const Classifier& model) {
  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) names.insert(p.key());
  for (const auto& b : model->named_buffers()) names.insert(b.key());
  return names;
}

TEST(WideResNet, HasTheReferenceParameterNames) {
  Classifier model = create_model({"wrn-16-1", 3, 10, 32, 32});
  const auto names = state_names(model);
  for (const char* name :
       {"conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.bn1.running_mean",
        "block1.layer.0.bn1.num_batches_tracked", "block1.layer.0.conv1.weight",
        "block1.layer.0.bn2.bias", "block1.layer.0.conv2.weight", "block1.layer.1.conv2.weight",
        "block2.layer.0.convShortcut.weight", "block3.layer.0.convShortcut.weight",
        "block3.layer.1.conv1.weight", "bn1.weight", "bn1.running_var", "fc.weight", "fc.bias"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  // WRN-16-1: block1 keeps 16 channels, so it has no shortcut convolution; convs have no bias.
  EXPECT_FALSE(names.count("block1.layer.0.convShortcut.weight"));
  EXPECT_FALSE(names.count("conv1.bias"));
  // 1 + 3 groups x 2 blocks x (2 convs + 2 BN) + 2 shortcuts + final BN + fc: count tensors.
  EXPECT_EQ(model->named_parameters().size(), 1 + 6 * 6 + 2 + 2 + 2);
  int64_t total = 0;
  for (const auto& p : model->parameters()) total += p.numel();
  EXPECT_EQ(total, 175066);  // the NAD reference WRN-16-1 in PyTorch
}

TEST(WideResNet, ReturnsGroupFeaturesAndLogits) {
  Classifier model = create_model({"wrn-16-2", 3, 7, 32, 32});
  ModelOutput out = model->forward(torch::rand({2, 3, 32, 32}));
  ASSERT_EQ(out.features.size(), 3u);
  EXPECT_EQ(out.features[0].sizes(), torch::IntArrayRef({2, 32, 32, 32}));
  EXPECT_EQ(out.features[1].sizes(), torch::IntArrayRef({2, 64, 16, 16}));
  EXPECT_EQ(out.features[2].sizes(), torch::IntArrayRef({2, 128, 8, 8}));
  EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 7}));
  EXPECT_EQ(model->group_names(), (std::vector<std::string>{"block1", "block2", "block3"}));
  EXPECT_EQ(default_betas(model), (std::vector<double>{500, 1000, 1000}));
}

TEST(PreActResNet18, HasBackdoorBenchNamesAndShapes) {
  Classifier model = create_model({"preact-resnet18", 3, 10, 32, 32});
  const auto names = state_names(model);
  for (const char* name : {"conv1.weight", "layer1.0.bn1.weight", "layer1.0.conv2.weight",
                           "layer2.0.shortcut.0.weight", "layer4.1.bn2.running_mean",
                           "linear.weight", "linear.bias"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  EXPECT_FALSE(names.count("bn1.weight"));  // no final BatchNorm in the pre-activation form
  EXPECT_FALSE(names.count("layer1.0.shortcut.0.weight"));
  ModelOutput out = model->forward(torch::rand({2, 3, 32, 32}));
  ASSERT_EQ(out.features.size(), 3u);
  EXPECT_EQ(out.features[0].sizes(), torch::IntArrayRef({2, 128, 16, 16}));
  EXPECT_EQ(out.features[2].sizes(), torch::IntArrayRef({2, 512, 4, 4}));
  EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 10}));
}

TEST(ResNet18, HasPostActivationNames) {
  Classifier model = create_model({"resnet18", 3, 43, 32, 32});
  const auto names = state_names(model);
  for (const char* name :
       {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer1.0.bn1.weight",
        "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var", "linear.weight"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  int64_t total = 0;
  for (const auto& p : model->parameters()) total += p.numel();
  EXPECT_EQ(total, 11173962 + 33 * 513);  // the 10-class count plus 33 more output rows
  EXPECT_EQ(model->forward(torch::rand({1, 3, 32, 32})).logits.size(1), 43);
}

TEST(MnistCnn, TwoConvGroupsOnGreyscale) {
  Classifier model = create_model({"mnist-cnn", 1, 10, 28, 28});
  ModelOutput out = model->forward(torch::rand({3, 1, 28, 28}));
  ASSERT_EQ(out.features.size(), 2u);
  EXPECT_EQ(out.features[0].sizes(), torch::IntArrayRef({3, 32, 28, 28}));
  EXPECT_EQ(out.features[1].sizes(), torch::IntArrayRef({3, 64, 14, 14}));
  EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({3, 10}));
  const auto names = state_names(model);
  EXPECT_TRUE(names.count("fc1.weight") && names.count("fc2.bias") && names.count("conv2.weight"));
}

TEST(CreateModel, RejectsUnknownArchitectures) {
  EXPECT_THROW(create_model({"alexnet", 3, 10, 32, 32}), UserError);
  EXPECT_THROW(create_model({"wrn-15-1", 3, 10, 32, 32}), UserError);
  EXPECT_THROW(create_model({"mnist-cnn", 1, 10, 30, 30}), UserError);
}

TEST(CloneModel, CopiesWeightsAndBuffersIndependently) {
  torch::manual_seed(0);
  ModelSpec spec{"wrn-10-1", 3, 10, 32, 32};
  Classifier a = create_model(spec);
  a->train();
  a->forward(torch::rand({4, 3, 32, 32}));  // moves BatchNorm running stats
  Classifier b = clone_model(a, spec);
  a->eval();
  b->eval();
  torch::Tensor x = torch::rand({2, 3, 32, 32});
  EXPECT_TRUE(torch::allclose(a->forward(x).logits, b->forward(x).logits));
  {
    torch::NoGradGuard no_grad;
    b->parameters()[0].add_(1);
  }
  EXPECT_FALSE(torch::allclose(a->forward(x).logits, b->forward(x).logits));
}

}  // namespace
}  // namespace nad::models
