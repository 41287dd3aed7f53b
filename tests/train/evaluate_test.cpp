// predict: the CPU's batches split over single-threaded workers give the labels one thread
// gives, and the model keeps its mode.
#include "nad/train/evaluate.h"

#include <gtest/gtest.h>

#include "nad/data/augment.h"
#include "nad/models/classifier.h"
#include "support/thread_count.h"

namespace nad::train {
namespace {

using Evaluate = KeepsThreadCount;

models::Classifier random_wrn() {
  torch::manual_seed(3);
  models::Classifier model = models::create_model({"wrn-16-1", 3, 10, 32, 32});
  // Away from the initial statistics, so that eval-mode BatchNorm matters.
  torch::NoGradGuard no_grad;
  for (auto& buffer : model->named_buffers()) {
    if (buffer.key().find("running_mean") != std::string::npos) buffer.value().uniform_(-0.2, 0.2);
    if (buffer.key().find("running_var") != std::string::npos) buffer.value().uniform_(0.5, 2);
  }
  return model;
}

// A fresh network maps all images to nearly the same logits; centring them over `images`
// (through the last layer's bias) lets their differences pick different classes.
void centre_logits(const models::Classifier& model, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  model->eval();
  for (auto& parameter : model->named_parameters()) {
    if (parameter.key() == "fc.bias") {
      parameter.value().sub_(model->forward(data::to_input(images)).logits.mean(0));
    }
  }
}

TEST_F(Evaluate, BatchesSplitOverThreadsGiveTheLabelsOfOneThread) {
  models::Classifier model = random_wrn();
  torch::manual_seed(4);
  // 301 images: five batches of 64 and a last one of 45, split 3 + 2 + ... unevenly.
  // Each image its own brightness and colour, plus noise.
  torch::Tensor tint = torch::randint(0, 200, {301, 1, 1, 3}, torch::kInt);
  torch::Tensor images =
      (tint + torch::randint(0, 56, {301, 32, 32, 3}, torch::kInt)).to(torch::kUInt8);
  centre_logits(model, images);
  at::set_num_threads(1);
  torch::Tensor one = predict(model, images, 64);
  at::set_num_threads(2);
  torch::Tensor split = predict(model, images, 64);
  at::set_num_threads(4);
  torch::Tensor four = predict(model, images, 64);
  ASSERT_EQ(one.sizes(), torch::IntArrayRef({301}));
  EXPECT_TRUE(torch::equal(one, split));
  EXPECT_TRUE(torch::equal(one, four));
  // The same labels as the model's own forward on the whole set.
  torch::Tensor direct;
  {
    torch::NoGradGuard no_grad;
    model->eval();
    direct = model->forward(data::to_input(images)).logits.argmax(1);
  }
  EXPECT_TRUE(torch::equal(one, direct));
  // Several classes: the comparisons above are not of one class everywhere.
  EXPECT_GT(std::get<0>(at::_unique(one)).numel(), 2);
  EXPECT_EQ(at::get_num_threads(), 4);
}

TEST_F(Evaluate, PredictLeavesTheModelInItsModeAndHandlesTinySets) {
  models::Classifier model = random_wrn();
  model->train();
  at::set_num_threads(2);
  torch::Tensor three = torch::randint(0, 256, {3, 32, 32, 3}, torch::kUInt8);
  EXPECT_EQ(predict(model, three, 64).numel(), 3);
  EXPECT_EQ(predict(model, three.slice(0, 0, 0), 64).numel(), 0);
  EXPECT_TRUE(model->is_training());
}

}  // namespace
}  // namespace nad::train
