#include "nad/attacks/trojan.h"

#include <gtest/gtest.h>

#include "nad/io/png.h"
#include "nad/util/error.h"
#include "support/temp_dir.h"

namespace nad::attacks {
namespace {

AttackOptions trojan() {
  AttackOptions o;
  o.name = "trojan";
  o.target = 2;
  return o;
}

TEST(Trojan, StampsThePatchFileBottomRight) {
  test::TempDir dir;
  torch::Tensor patch =
      torch::arange(2 * 2 * 3, torch::kInt).view({2, 2, 3}).mul(20).to(torch::kUInt8);
  io::write_png(dir / "trigger.png", patch);
  AttackOptions o = trojan();
  o.trigger_file = (dir / "trigger.png").string();
  auto attack = create_attack(o, 5, 6, 3, 10);
  torch::Tensor images = torch::randint(0, 256, {3, 5, 6, 3}, torch::kUInt8);
  torch::Tensor out = attack->apply(images);
  // Rows 3-4 and columns 4-5 hold the patch exactly; every other pixel is untouched.
  for (int n = 0; n < 3; ++n) {
    EXPECT_TRUE(out[n].slice(0, 3).slice(1, 4).equal(patch));
    EXPECT_TRUE(out[n].slice(0, 0, 3).equal(images[n].slice(0, 0, 3)));
    EXPECT_TRUE(out[n].slice(1, 0, 4).equal(images[n].slice(1, 0, 4)));
  }
  EXPECT_EQ(out[1][4][5][2].item<int>(), 11 * 20);
  EXPECT_EQ(out[0][3][4][0].item<int>(), 0);
}

TEST(Trojan, RefusesMissingOrOversizedTriggers) {
  EXPECT_THROW(create_attack(trojan(), 8, 8, 1, 10), UserError);
  AttackOptions o = trojan();
  o.trigger_file = "/nonexistent/trigger.png";
  EXPECT_THROW(create_attack(o, 8, 8, 1, 10), UserError);
  EXPECT_THROW(Trojan(trojan(), 10, 4, 4, torch::zeros({5, 5, 1}, torch::kUInt8)), UserError);
  EXPECT_THROW(Trojan(trojan(), 10, 8, 8, torch::zeros({3, 2, 1}, torch::kUInt8)), UserError);
}

models::Classifier small_cnn() {
  torch::manual_seed(0);
  return models::create_model({"mnist-cnn", 1, 10, 8, 8});
}

TEST(Trojan, SelectsTheNeuronWithTheLargestOutgoingWeight) {
  models::Classifier model = small_cnn();
  {
    torch::NoGradGuard no_grad;
    auto params = model->named_parameters();
    // Group 0 (conv1's 32 channels) feeds conv2 (64 x 32 x 3 x 3).
    params["conv2.weight"].fill_(0.01);
    params["conv2.weight"].select(1, 7).fill_(-0.05);  // the sign does not matter
    // Group 1 (conv2's 64 channels, 2 x 2 after pooling) feeds fc1 (128 x 256).
    params["fc1.weight"].fill_(0.01);
    params["fc1.weight"].slice(1, 3 * 4, 3 * 4 + 4).fill_(0.02);
  }
  torch::Tensor sums;
  EXPECT_EQ(select_trojan_neuron(model, 0, 32, &sums), 7);
  // Hand-computed: 64 outputs x 9 taps x |w|.
  EXPECT_NEAR(sums[7].item<double>(), 64 * 9 * 0.05, 1e-5);
  EXPECT_NEAR(sums[0].item<double>(), 64 * 9 * 0.01, 1e-5);
  EXPECT_EQ(select_trojan_neuron(model, 1, 64, &sums), 3);
  EXPECT_NEAR(sums[3].item<double>(), 128 * 4 * 0.02, 1e-5);
  EXPECT_NEAR(sums[5].item<double>(), 128 * 4 * 0.01, 1e-5);
}

TEST(Trojan, GeneratedPatchExcitesItsNeuron) {
  models::Classifier model = small_cnn();
  torch::Tensor images = torch::randint(0, 256, {16, 8, 8, 1}, torch::kUInt8);
  TrojanTriggerOptions options;
  options.size = 3;
  options.group = 0;
  options.neuron = 4;
  options.steps = 60;
  options.lr = 0.1;
  TrojanTrigger trigger = generate_trojan_trigger(model, images, options, torch::kCPU);
  EXPECT_EQ(trigger.patch.sizes(), (std::vector<int64_t>{3, 3, 1}));
  EXPECT_EQ(trigger.patch.scalar_type(), torch::kUInt8);
  EXPECT_EQ(trigger.group, 0);
  EXPECT_EQ(trigger.neuron, 4);
  EXPECT_GT(trigger.activation_triggered, trigger.activation_clean);
  // Re-measured by hand: conv1 channel 4 (ReLU), maximum over positions, mean over images.
  Trojan attack(trojan(), 10, 8, 8, trigger.patch);
  torch::Tensor stamped = attack.apply(images).permute({0, 3, 1, 2}).to(torch::kFloat) / 255;
  torch::NoGradGuard no_grad;
  const double measured =
      model->forward(stamped).features[0].select(1, 4).flatten(1).amax(1).mean().item<double>();
  EXPECT_NEAR(measured, trigger.activation_triggered, 1e-5);
  // The same seed gives the same patch.
  EXPECT_TRUE(
      generate_trojan_trigger(model, images, options, torch::kCPU).patch.equal(trigger.patch));
  options.neuron = 32;
  EXPECT_THROW(generate_trojan_trigger(model, images, options, torch::kCPU), UserError);
  options.neuron = -1;
  options.group = 2;
  EXPECT_THROW(generate_trojan_trigger(model, images, options, torch::kCPU), UserError);
}

}  // namespace
}  // namespace nad::attacks
