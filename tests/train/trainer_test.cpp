#include "nad/train/trainer.h"

#include <gtest/gtest.h>

#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "support/cuda.h"
#include "support/tasks.h"

namespace nad::train {
namespace {

TEST(Schedule, LearningRatesPerEpoch) {
  TrainOptions o;
  o.lr = 0.1;
  o.epochs = 4;
  o.schedule = Schedule::kReference;
  EXPECT_DOUBLE_EQ(lr_at(o, 0), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(o, 1), 0.1);
  EXPECT_NEAR(lr_at(o, 2), 0.01, 1e-12);
  o.schedule = Schedule::kCosine;
  EXPECT_DOUBLE_EQ(lr_at(o, 0), 0.1);
  EXPECT_NEAR(lr_at(o, 2), 0.05, 1e-12);
  o.schedule = Schedule::kStep;
  o.milestones = {1, 3};
  EXPECT_NEAR(lr_at(o, 1), 0.01, 1e-12);
  EXPECT_NEAR(lr_at(o, 3), 0.001, 1e-12);
  o.schedule = Schedule::kConstant;
  EXPECT_DOUBLE_EQ(lr_at(o, 3), 0.1);
  EXPECT_THROW(parse_schedule("linear"), UserError);
}

// Three quiet epochs of mnist-cnn on test::brightness_task, which learn it.
TrainOptions brightness_options() {
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 32;
  o.lr = 0.05;
  o.augment.crop_padding = 1;
  o.quiet = true;
  return o;
}

TEST(Trainer, LearnsASimpleTaskReproducibly) {
  torch::manual_seed(0);
  data::Dataset train = test::brightness_task(256);
  models::ModelSpec spec{"mnist-cnn", 1, 2, 8, 8};
  TrainOptions o = brightness_options();
  torch::manual_seed(5);
  models::Classifier a = models::create_model(spec);
  auto records = train_model(a, train, o, [&](const models::Classifier& m) {
    Metrics metrics;
    metrics.clean_acc = accuracy(m, train, 100);
    return metrics;
  });
  ASSERT_EQ(records.size(), 3u);
  EXPECT_GT(records.back().metrics.clean_acc, 95.0);
  EXPECT_EQ(records[2].epoch, 3);

  torch::manual_seed(5);
  models::Classifier b = models::create_model(spec);
  auto again = train_model(b, train, o);
  EXPECT_DOUBLE_EQ(again.back().loss, records.back().loss);
}

TEST(Trainer, KeepGoingEndsTrainingEarly) {
  torch::manual_seed(0);
  data::Dataset train = test::brightness_task(64);
  models::Classifier model = models::create_model({"mnist-cnn", 1, 2, 8, 8});
  TrainOptions o;
  o.epochs = 5;
  o.lr = 0.01;
  o.quiet = true;
  std::vector<int> seen;
  o.keep_going = [&](const models::Classifier&, int epoch) {
    seen.push_back(epoch);
    return epoch < 1;
  };
  auto records = train_model(model, train, o);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(seen, (std::vector<int>{0, 1}));
}

TEST(Trainer, DivergenceIsReported) {
  data::Dataset train = test::brightness_task(64);
  models::Classifier model = models::create_model({"mnist-cnn", 1, 2, 8, 8});
  TrainOptions o;
  o.epochs = 2;
  o.lr = 1e12;
  o.quiet = true;
  EXPECT_THROW(train_model(model, train, o), DivergedError);
}

// The same seeds train the same model on the GPU, up to the GPU's arithmetic (cuDNN's
// algorithms, TF32): the loss curve and the weights agree closely, not bitwise.
TEST(TrainerCuda, TrainsLikeTheCpu) {
  NAD_REQUIRE_CUDA();
  torch::manual_seed(0);
  const data::Dataset train = test::brightness_task(256);
  const data::Dataset train_on_gpu{train.images.to(torch::kCUDA), train.labels.to(torch::kCUDA)};
  const models::ModelSpec spec{"mnist-cnn", 1, 2, 8, 8};
  TrainOptions o = brightness_options();
  torch::manual_seed(5);
  models::Classifier on_cpu = models::create_model(spec);
  torch::manual_seed(5);
  models::Classifier on_gpu = models::create_model(spec);
  const auto cpu_records = train_model(on_cpu, train, o);
  o.device = torch::kCUDA;
  const auto gpu_records = train_model(on_gpu, train, o);
  ASSERT_EQ(gpu_records.size(), cpu_records.size());
  for (size_t i = 0; i < cpu_records.size(); ++i) {
    EXPECT_NEAR(gpu_records[i].loss, cpu_records[i].loss, 0.02 * cpu_records[i].loss + 1e-3) << i;
  }
  const auto cpu_parameters = on_cpu->parameters();
  const auto gpu_parameters = on_gpu->parameters();
  ASSERT_EQ(cpu_parameters.size(), gpu_parameters.size());
  for (size_t i = 0; i < cpu_parameters.size(); ++i) {
    ASSERT_TRUE(gpu_parameters[i].is_cuda());
    EXPECT_TRUE(torch::allclose(gpu_parameters[i].cpu(), cpu_parameters[i], 1e-2, 1e-2)) << i;
  }
  EXPECT_GT(accuracy(on_gpu, train_on_gpu, 100), 95.0);
}

TEST(TrainerCuda, Bf16AutocastLearnsTheTask) {
  NAD_REQUIRE_CUDA();
  torch::manual_seed(0);
  const data::Dataset train = test::brightness_task(256);
  const data::Dataset train_on_gpu{train.images.to(torch::kCUDA), train.labels.to(torch::kCUDA)};
  ComputeOptions bf16;
  bf16.precision = Precision::kBf16;
  set_compute_options(bf16);
  TrainOptions o = brightness_options();
  o.device = torch::kCUDA;
  torch::manual_seed(5);
  models::Classifier model = models::create_model({"mnist-cnn", 1, 2, 8, 8});
  const auto records = train_model(model, train, o);
  const double acc = accuracy(model, train_on_gpu, 100);
  set_compute_options(ComputeOptions{});
  EXPECT_GT(acc, 95.0);
  EXPECT_LT(records.back().loss, records.front().loss);
  for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
}

}  // namespace
}  // namespace nad::train
