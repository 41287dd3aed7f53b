#include "nad/train/trainer.h"

#include <gtest/gtest.h>

#include "nad/util/error.h"
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

TEST(Trainer, LearnsASimpleTaskReproducibly) {
  torch::manual_seed(0);
  data::Dataset train = test::brightness_task(256);
  models::ModelSpec spec{"mnist-cnn", 1, 2, 8, 8};
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 32;
  o.lr = 0.05;
  o.augment.crop_padding = 1;
  o.quiet = true;
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

}  // namespace
}  // namespace nad::train
