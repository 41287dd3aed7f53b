#include "nad/defenses/fst.h"

#include <gtest/gtest.h>

#include <cmath>

#include "nad/util/error.h"

namespace nad::defenses {
namespace {

TEST(Fst, FindsTheClassifierLayer) {
  EXPECT_EQ(classifier_layer(models::create_model({"wrn-16-1", 3, 10, 32, 32}), 10), "fc");
  // mnist-cnn: fc1 has 128 rows, fc2 one per class.
  EXPECT_EQ(classifier_layer(models::create_model({"mnist-cnn", 1, 4, 8, 8}), 4), "fc2");
  EXPECT_THROW(classifier_layer(models::create_model({"mnist-cnn", 1, 4, 8, 8}), 7), UserError);
}

TEST(Fst, ResetDrawsTheAuthorsRangeAndKeepsTheOriginal) {
  torch::manual_seed(1);
  models::Classifier model = models::create_model({"mnist-cnn", 1, 4, 8, 8});
  auto p = model->named_parameters();
  const torch::Tensor before = p["fc2.weight"].detach().clone();
  const FstHead head = reset_classifier(model, "fc2", 7);
  EXPECT_TRUE(head.original.equal(before));
  EXPECT_NEAR(head.original_norm, before.to(torch::kDouble).norm().item<double>(), 1e-9);
  const double bound = 1.0 / std::sqrt(128.0);  // fc2 reads 128 features
  EXPECT_LE(p["fc2.weight"].abs().max().item<double>(), bound);
  EXPECT_LE(p["fc2.bias"].abs().max().item<double>(), bound);
  EXPECT_FALSE(p["fc2.weight"].equal(before));
  // The head's weight is the model's own parameter, and the same seed draws the same values.
  EXPECT_EQ(head.weight.data_ptr(), p["fc2.weight"].data_ptr());
  models::Classifier again = models::create_model({"mnist-cnn", 1, 4, 8, 8});
  reset_classifier(again, "fc2", 7);
  EXPECT_TRUE(again->named_parameters()["fc2.weight"].equal(p["fc2.weight"]));
}

// alpha * <W, W0> by hand; its gradient is alpha * W0; the rescale restores ||W0||.
TEST(Fst, PenaltyAndRescaleByHand) {
  FstHead head;
  head.weight = torch::tensor({{1.0f, 2.0f}, {3.0f, 4.0f}}).requires_grad_(true);
  head.original = torch::tensor({{0.5f, -1.0f}, {2.0f, 0.0f}});
  head.original_norm = std::sqrt(0.25 + 1.0 + 4.0);
  const torch::Tensor penalty = fst_penalty(head, 0.2);
  EXPECT_NEAR(penalty.item<double>(), 0.2 * (0.5 - 2.0 + 6.0 + 0.0), 1e-6);
  penalty.backward();
  EXPECT_TRUE(torch::allclose(head.weight.grad(), 0.2 * head.original));
  rescale_to_original_norm(head);
  EXPECT_NEAR(head.weight.detach().to(torch::kDouble).norm().item<double>(), head.original_norm,
              1e-6);
  EXPECT_NEAR(head.weight[0][1].item<double>() / head.weight[0][0].item<double>(), 2.0, 1e-6);
}

}  // namespace
}  // namespace nad::defenses
