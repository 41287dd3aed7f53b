#include "nad/models/input_norm.h"

#include <gtest/gtest.h>

#include "nad/models/checkpoint.h"
#include "nad/models/classifier.h"
#include "support/temp_dir.h"
#include "support/user_error.h"

namespace nad::models {
namespace {

TEST(InputNorm, PresetsAreBackdoorBenchsValues) {
  const InputNorm cifar10 = parse_input_norm("cifar10");
  EXPECT_EQ(cifar10.name, "cifar10");
  EXPECT_EQ(cifar10.mean, (std::vector<double>{0.4914, 0.4822, 0.4465}));
  EXPECT_EQ(cifar10.std, (std::vector<double>{0.247, 0.243, 0.261}));
  EXPECT_EQ(parse_input_norm("tiny").std, (std::vector<double>{0.2302, 0.2265, 0.2262}));
  EXPECT_EQ(parse_input_norm("mnist").mean, (std::vector<double>{0.5}));
  EXPECT_TRUE(parse_input_norm("gtsrb").identity());
  EXPECT_TRUE(parse_input_norm("none").identity());
  EXPECT_EQ(parse_input_norm("imagenet").mean, (std::vector<double>{0.485, 0.456, 0.406}));
}

TEST(InputNorm, ParsesPerChannelValues) {
  const InputNorm norm = parse_input_norm("0.5,0.25,0/2,0.5,1");
  EXPECT_EQ(norm.name, "custom");
  EXPECT_EQ(norm.mean, (std::vector<double>{0.5, 0.25, 0}));
  EXPECT_EQ(norm.std, (std::vector<double>{2, 0.5, 1}));
  EXPECT_EQ(parse_input_norm("0.1/0.3").mean, (std::vector<double>{0.1}));
}

TEST(InputNorm, RejectsMalformedValues) {
  test::expect_user_error([] { parse_input_norm("cifar11"); }, {"--input-norm", "cifar11"});
  test::expect_user_error([] { parse_input_norm("0.5,x/1,1"); }, {"--input-norm", "'x'"});
  test::expect_user_error([] { parse_input_norm("0.5,0.5/1"); }, {"2 means", "1 standard"});
  test::expect_user_error([] { parse_input_norm("0.5/0"); }, {"must be > 0"});
  test::expect_user_error([] { parse_input_norm("/1"); }, {"--input-norm"});
}

TEST(InputNorm, BackdoorBenchDatasetNames) {
  EXPECT_EQ(backdoorbench_input_norm("cifar10")->mean, parse_input_norm("cifar10").mean);
  EXPECT_EQ(backdoorbench_input_norm("cityscapes")->mean, parse_input_norm("cifar10").mean);
  EXPECT_EQ(backdoorbench_input_norm("tiny")->name, "tiny");
  EXPECT_TRUE(backdoorbench_input_norm("gtsrb")->identity());
  EXPECT_TRUE(backdoorbench_input_norm("celeba")->identity());
  EXPECT_FALSE(backdoorbench_input_norm("svhn").has_value());
}

// The model normalises inside forward: its output on x equals the network's on (x - m) / s,
// computed here by hand.
TEST(InputNorm, ModelNormalisesBeforeTheFirstLayer) {
  torch::manual_seed(0);
  const InputNorm norm = parse_input_norm("0.25,0.5,0.75/0.5,0.25,2");
  Classifier model = create_model({"wrn-10-1", 3, 4, 8, 8, norm});
  model->eval();
  const torch::Tensor x = torch::rand({2, 3, 8, 8});
  torch::Tensor by_hand = x.clone();
  for (int c = 0; c < 3; ++c) {
    by_hand.select(1, c).sub_(norm.mean[c]).div_(norm.std[c]);
  }
  torch::NoGradGuard no_grad;
  const ModelOutput normalised = model->forward(x);
  const ModelOutput network = model->forward_normalised(by_hand);
  EXPECT_TRUE(torch::allclose(normalised.logits, network.logits, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(normalised.features[0], network.features[0], 1e-5, 1e-6));
  // And differs from the un-normalised input's.
  EXPECT_FALSE(torch::allclose(normalised.logits, model->forward_normalised(x).logits, 1e-3));
  // A clone keeps the normalisation.
  Classifier copy = clone_model(model, {"wrn-10-1", 3, 4, 8, 8});
  EXPECT_EQ(copy->input_norm(), norm);
  EXPECT_TRUE(torch::allclose(copy->forward(x).logits, normalised.logits));
}

TEST(InputNorm, ChannelCountMustMatchTheModel) {
  test::expect_user_error(
      [] {
        create_model({"mnist-cnn", 1, 10, 28, 28, parse_input_norm("cifar10")});
      },
      {"3 channels", "have 1", "--input-norm"});
  EXPECT_NO_THROW(create_model({"mnist-cnn", 1, 10, 28, 28, parse_input_norm("mnist")}));
}

TEST(InputNorm, ModelFileRecordsItAndTheCommandLineOverridesIt) {
  test::TempDir dir;
  const ModelSpec spec{"wrn-10-1", 3, 10, 32, 32, parse_input_norm("cifar100")};
  Classifier model = create_model(spec);
  models::save_checkpoint(dir / "model.pt", model, spec);
  const models::LoadedModel loaded = models::load_checkpoint(dir / "model.pt");
  EXPECT_EQ(loaded.model->input_norm(), parse_input_norm("cifar100"));
  EXPECT_EQ(loaded.model->input_norm().name, "cifar100");
  EXPECT_EQ(loaded.input_norm_source, "the file");
  EXPECT_NE(loaded.description.find("cifar100 (mean 0.5071"), std::string::npos)
      << loaded.description;

  models::LoadOptions options;
  options.input_norm = InputNorm{};
  const models::LoadedModel overridden = models::load_checkpoint(dir / "model.pt", options);
  EXPECT_TRUE(overridden.model->input_norm().identity());
  EXPECT_EQ(overridden.input_norm_source, "--input-norm");

  // A bare state_dict says nothing: none.
  io::write_torch_state_dict(dir / "bare.pt", models::model_state(model), io::TorchFormat::kZip);
  const models::LoadedModel bare = models::load_checkpoint(dir / "bare.pt");
  EXPECT_TRUE(bare.model->input_norm().identity());
  EXPECT_EQ(bare.input_norm_source, "none given");
}

}  // namespace
}  // namespace nad::models
