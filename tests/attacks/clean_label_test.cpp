#include "nad/attacks/clean_label.h"

#include <gtest/gtest.h>

#include "nad/attacks/pgd.h"
#include "nad/data/augment.h"
#include "nad/util/error.h"

namespace nad::attacks {
namespace {

AttackOptions cl() {
  AttackOptions o;
  o.name = "cl";
  o.target = 1;
  return o;
}

models::Classifier small_cnn() {
  torch::manual_seed(0);
  return models::create_model({"mnist-cnn", 1, 4, 8, 8});
}

double loss_of(const models::Classifier& model, const torch::Tensor& images,
               const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  model->eval();
  return torch::nn::functional::cross_entropy(model->forward(data::to_input(images)).logits, labels)
      .item<double>();
}

TEST(Pgd, StaysInsideTheBallAndRaisesTheLoss) {
  models::Classifier model = small_cnn();
  torch::Tensor images = torch::randint(20, 236, {12, 8, 8, 1}, torch::kUInt8);
  torch::Tensor labels = torch::randint(0, 4, {12}, torch::kLong);
  PgdOptions options;
  options.eps = 8.0 / 255;
  options.steps = 5;
  options.batch_size = 5;  // several batches
  torch::Tensor adversarial = pgd_perturb(model, images, labels, options, torch::kCPU);
  ASSERT_EQ(adversarial.sizes(), images.sizes());
  ASSERT_EQ(adversarial.scalar_type(), torch::kUInt8);
  const int max_change =
      (adversarial.to(torch::kInt) - images.to(torch::kInt)).abs().max().item<int>();
  EXPECT_LE(max_change, 8);
  EXPECT_GT(max_change, 0);
  EXPECT_GT(loss_of(model, adversarial, labels), loss_of(model, images, labels));
  options.steps = 0;
  EXPECT_TRUE(pgd_perturb(model, images, labels, options, torch::kCPU).equal(images));
}

TEST(CleanLabel, PerturbsThenStampsFourCornersAndKeepsLabels) {
  auto attack = create_attack(cl(), 8, 8, 1, 4);
  data::Dataset train{torch::randint(40, 216, {40, 8, 8, 1}, torch::kUInt8),
                      torch::arange(40, torch::kLong).remainder(4)};
  // No clean model: a clear error, not a silent BadNets.
  EXPECT_THROW(attack->poison(train, 0), UserError);
  auto* clean_label = dynamic_cast<CleanLabel*>(attack.get());
  ASSERT_NE(clean_label, nullptr);
  clean_label->set_clean_model(small_cnn(), torch::kCPU);
  PoisonedSet poisoned = attack->poison(train, 0);
  ASSERT_EQ(poisoned.indices.size(0), 8);  // 0.8 of the 10 target-class rows
  EXPECT_TRUE(train.labels.index_select(0, poisoned.indices).eq(1).all().item<bool>());
  EXPECT_TRUE(poisoned.data.labels.equal(train.labels));

  const auto& corners = *dynamic_cast<BadNets*>(attack.get());
  torch::Tensor mask = corners.mask().unsqueeze(-1);
  EXPECT_EQ(corners.mask().sum().item<int>(), 4 * 9);
  for (int64_t k = 0; k < poisoned.indices.size(0); ++k) {
    const int64_t row = poisoned.indices[k].item<int64_t>();
    torch::Tensor image = poisoned.data.images[row];
    // The checkerboard exactly in the four corners; elsewhere within eps = 16 of the original.
    EXPECT_TRUE(
        image.masked_select(mask).equal(corners.values().unsqueeze(-1).masked_select(mask)));
    torch::Tensor diff = (image.to(torch::kInt) - train.images[row].to(torch::kInt)).abs();
    EXPECT_LE(diff.masked_select(mask.logical_not()).max().item<int>(), 16);
  }
  // Rows not chosen are untouched.
  torch::Tensor untouched = torch::ones({40}, torch::kBool).index_fill_(0, poisoned.indices, false);
  EXPECT_TRUE(poisoned.data.images.index({untouched}).equal(train.images.index({untouched})));
  // At test time the trigger is the checkerboard alone.
  torch::Tensor test = torch::full({1, 8, 8, 1}, 100, torch::kUInt8);
  torch::Tensor triggered = attack->apply(test);
  EXPECT_EQ(triggered[0][7][7][0].item<int>(), 255);
  EXPECT_EQ(triggered[0][0][0][0].item<int>(), 255);
  EXPECT_EQ(triggered[0][4][4][0].item<int>(), 100);
}

TEST(CleanLabel, IsAllToOneOnly) {
  AttackOptions o = cl();
  o.label_mode = LabelMode::kAllToAll;
  EXPECT_THROW(create_attack(o, 8, 8, 1, 4), UserError);
  EXPECT_TRUE(is_clean_label("cl"));
  EXPECT_DOUBLE_EQ(default_poison_rate("cl"), 0.8);
  o = cl();
  o.eps = 300;
  EXPECT_THROW(create_attack(o, 8, 8, 1, 4), UserError);
}

}  // namespace
}  // namespace nad::attacks
