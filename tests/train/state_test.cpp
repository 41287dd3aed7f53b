// Resumable training loops: a loop stopped part-way and continued from its saved state ends
// with the same weights, bit for bit, as one that ran straight through.
#include "nad/train/state.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>

#include "nad/train/trainer.h"
#include "nad/util/error.h"
#include "nad/util/stop.h"
#include "support/tasks.h"
#include "support/temp_dir.h"

namespace nad::train {
namespace {

const models::ModelSpec kSpec{"mnist-cnn", 1, 2, 8, 8};

TrainOptions small_run() {
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 16;
  o.lr = 0.05;
  o.augment.crop_padding = 1;
  o.augment.cutout_holes = 1;  // draws from the generator too
  o.augment.cutout_length = 2;
  o.quiet = true;
  o.seed = 3;
  return o;
}

std::vector<torch::Tensor> weights_of(const models::Classifier& model) {
  std::vector<torch::Tensor> all;
  for (const auto& p : model->parameters()) all.push_back(p.detach().clone());
  for (const auto& b : model->buffers()) all.push_back(b.detach().clone());
  return all;
}

void expect_identical(const models::Classifier& a, const models::Classifier& b) {
  const auto wa = weights_of(a), wb = weights_of(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) EXPECT_TRUE(torch::equal(wa[i], wb[i])) << "tensor " << i;
}

models::Classifier fresh_model(int seed) {
  torch::manual_seed(seed);
  return models::create_model(kSpec);
}

TEST(StateStore, RoundTripsEveryField) {
  test::TempDir dir;
  StateStore store(dir / "state");
  LoopState state;
  state.epoch = 2;
  state.step = 5;
  state.order = torch::randperm(10, torch::kLong);
  state.loss_sum = 1.0 / 3.0;
  state.correct = 7;
  state.seen = 9;
  state.weights = {torch::randn({3, 2}), torch::arange(4, torch::kLong)};
  state.momentum = {torch::Tensor(), torch::ones({4})};
  state.generator = torch::arange(16, torch::kUInt8);
  EpochRecord r;
  r.phase = "train";
  r.epoch = 1;
  r.lr = 0.05;
  r.loss = 0.123456789012345678;
  r.metrics.clean_acc = 91.25;
  r.metrics.asr = 3.5;
  r.metrics.robust_acc = 80;
  state.records = {r};
  state.extra = {{"best_acc", 97.5}};
  state.extra_tensors = {{"best.0", torch::full({2}, 4.0)}};
  store.save("student-lr0.01", state);
  EXPECT_TRUE(std::filesystem::exists(dir / "state" / "student-lr0.01.state"));
  EXPECT_FALSE(store.load("teacher").has_value());

  const LoopState back = *store.load("student-lr0.01");
  EXPECT_EQ(back.epoch, 2);
  EXPECT_EQ(back.step, 5);
  EXPECT_FALSE(back.complete);
  EXPECT_TRUE(torch::equal(back.order, state.order));
  EXPECT_EQ(back.loss_sum, 1.0 / 3.0);  // exactly: JSON keeps 17 digits
  EXPECT_EQ(back.correct, 7);
  EXPECT_EQ(back.seen, 9);
  ASSERT_EQ(back.weights.size(), 2u);
  EXPECT_TRUE(torch::equal(back.weights[0], state.weights[0]));
  EXPECT_TRUE(torch::equal(back.weights[1], state.weights[1]));
  ASSERT_EQ(back.momentum.size(), 2u);
  EXPECT_FALSE(back.momentum[0].defined());
  EXPECT_TRUE(torch::equal(back.momentum[1], torch::ones({4})));
  EXPECT_TRUE(torch::equal(back.generator, state.generator));
  ASSERT_EQ(back.records.size(), 1u);
  EXPECT_EQ(back.records[0].loss, r.loss);
  EXPECT_EQ(*back.records[0].metrics.asr, 3.5);
  EXPECT_EQ(back.extra["best_acc"], 97.5);
  ASSERT_EQ(back.extra_tensors.size(), 1u);
  EXPECT_TRUE(torch::equal(back.extra_tensors[0].second, torch::full({2}, 4.0)));
}

TEST(StateStore, RejectsAStateOfAnotherLoopOrADamagedFile) {
  test::TempDir dir;
  StateStore store(dir / "state");
  LoopState state;
  state.weights = {torch::zeros({2})};
  store.save("train", state);
  std::filesystem::copy_file(store.file("train"), store.file("prep"));
  EXPECT_THROW(store.load("prep"), UserError);  // its metadata names "train"
  {
    std::ofstream out(store.file("train"), std::ios::binary | std::ios::trunc);
    out << "PK not really";
  }
  EXPECT_THROW(store.load("train"), UserError);
}

TEST(StateStore, SgdMomentumRoundTrips) {
  torch::Tensor p = torch::ones({3}, torch::requires_grad());
  torch::optim::SGD sgd({p}, torch::optim::SGDOptions(0.1).momentum(0.9));
  EXPECT_FALSE(sgd_momentum(sgd, {p})[0].defined());  // no step yet
  p.sum().backward();
  sgd.step();
  const auto buffers = sgd_momentum(sgd, {p});
  ASSERT_TRUE(buffers[0].defined());
  EXPECT_TRUE(torch::equal(buffers[0], torch::ones({3})));  // the first gradient

  torch::Tensor q = torch::ones({3}, torch::requires_grad());
  torch::optim::SGD other({q}, torch::optim::SGDOptions(0.1).momentum(0.9));
  set_sgd_momentum(other, {q}, {torch::full({3}, 2.0)});
  EXPECT_TRUE(torch::equal(sgd_momentum(other, {q})[0], torch::full({3}, 2.0)));
  EXPECT_THROW(set_sgd_momentum(other, {q}, {torch::ones({4})}), UserError);
}

TEST(TrainResume, StoppedMidEpochThenResumedEqualsAnUninterruptedRun) {
  torch::manual_seed(0);
  const data::Dataset train = test::brightness_task(200);  // 13 steps per epoch
  const TrainOptions plain = small_run();

  models::Classifier straight = fresh_model(5);
  const auto straight_records = train_model(straight, train, plain);

  test::TempDir dir;
  TrainOptions o = plain;
  o.state = std::make_shared<StateStore>(dir / "state");
  o.state_key = "train";
  int stopped_at = -1;
  int steps = 0;
  o.after_step = [&](const models::Classifier&) {
    // A Ctrl-C in the middle of the second epoch.
    if (++steps == 19) request_stop(SIGINT);
  };
  models::Classifier first = fresh_model(5);
  try {
    train_model(first, train, o);
    ADD_FAILURE() << "not interrupted";
  } catch (const Interrupted& e) {
    stopped_at = e.exit_code();
    EXPECT_NE(std::string(e.what()).find("SIGINT"), std::string::npos) << e.what();
  }
  request_stop(0);
  EXPECT_EQ(stopped_at, 128 + SIGINT);
  const LoopState saved = *o.state->load("train");
  EXPECT_EQ(saved.epoch, 1);
  EXPECT_EQ(saved.step, 19 - 13);
  EXPECT_EQ(saved.records.size(), 1u);

  // A new process: another initialisation, which the state overrides.
  o.after_step = nullptr;
  models::Classifier resumed = fresh_model(99);
  torch::manual_seed(1234);  // the global generator too
  const auto records = train_model(resumed, train, o);
  expect_identical(resumed, straight);
  ASSERT_EQ(records.size(), straight_records.size());
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i].loss, straight_records[i].loss);
  EXPECT_TRUE(o.state->load("train")->complete);

  // Complete: a third call only loads the final weights.
  models::Classifier again = fresh_model(7);
  EXPECT_EQ(train_model(again, train, o).size(), 3u);
  expect_identical(again, straight);
}

TEST(TrainResume, KilledAfterAnEpochThenResumedEqualsAnUninterruptedRun) {
  torch::manual_seed(0);
  const data::Dataset train = test::brightness_task(120);
  TrainOptions plain = small_run();
  plain.epochs = 4;
  models::Classifier straight = fresh_model(5);
  train_model(straight, train, plain);

  // The state after epoch 2, as a process killed during epoch 3 leaves it.
  test::TempDir dir;
  TrainOptions two = plain;
  two.state = std::make_shared<StateStore>(dir / "state");
  two.state_key = "train";
  two.keep_going = [](const models::Classifier&, int epoch) { return epoch < 1; };
  models::Classifier partial = fresh_model(5);
  train_model(partial, train, two);
  LoopState state = *two.state->load("train");
  ASSERT_EQ(state.epoch, 2);
  state.complete = false;  // keep_going ended it; a kill would not have
  two.state->save("train", state);

  TrainOptions rest = plain;
  rest.state = two.state;
  rest.state_key = "train";
  models::Classifier resumed = fresh_model(42);
  train_model(resumed, train, rest);
  expect_identical(resumed, straight);
}

TEST(TrainResume, NonFiniteLossStopsNamingTheStepAndKeepsTheLastGoodState) {
  torch::manual_seed(0);
  const data::Dataset train = test::brightness_task(64);
  test::TempDir dir;
  TrainOptions o = small_run();
  o.state = std::make_shared<StateStore>(dir / "state");
  o.state_key = "train";
  o.label = "probe";
  setenv("NAD_TEST_NAN_AT", "probe:2:3", 1);
  models::Classifier model = fresh_model(5);
  try {
    train_model(model, train, o);
    ADD_FAILURE() << "no divergence";
  } catch (const DivergedError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("epoch 2, step 3"), std::string::npos) << message;
    EXPECT_NE(message.find("cross-entropy nan"), std::string::npos) << message;
    EXPECT_NE(message.find((dir / "state").string()), std::string::npos) << message;
    EXPECT_EQ(e.exit_code(), kDivergedExitCode);
  }
  unsetenv("NAD_TEST_NAN_AT");
  const LoopState saved = *o.state->load("train");
  EXPECT_EQ(saved.epoch, 1);  // the last good state
  EXPECT_FALSE(saved.complete);
  for (const auto& w : saved.weights) {
    if (w.is_floating_point()) EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
  }
  // The check comes before the optimiser step: the model itself holds no NaN either.
  for (const auto& p : model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

}  // namespace
}  // namespace nad::train
