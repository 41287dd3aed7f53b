#include "nad/defenses/nad.h"

#include <gtest/gtest.h>

#include "nad/train/evaluate.h"
#include "nad/util/error.h"
#include "support/tasks.h"

namespace nad::defenses {
namespace {

TEST(NadGroups, SelectionZeroesTheOtherBetas) {
  const std::vector<std::string> names{"block1", "block2", "block3"};
  const std::vector<double> betas{500, 1000, 1000};
  EXPECT_EQ(select_groups(betas, names, {}), betas);
  EXPECT_EQ(select_groups(betas, names, {"3"}), (std::vector<double>{0, 0, 1000}));
  EXPECT_EQ(select_groups(betas, names, {"block1", "2"}), (std::vector<double>{500, 1000, 0}));
  try {
    select_groups(betas, names, {"4"});
    FAIL() << "group 4 accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--groups"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("block3"), std::string::npos) << e.what();
  }
}

// Two classes told apart by brightness: learnt in an epoch or two, after which the hold-out
// accuracy cannot improve and early stopping must end the run.
TEST(Finetune, PatienceKeepsTheBestEpochAndStops) {
  torch::manual_seed(3);
  CleanData clean;
  clean.train = test::brightness_task(128);
  clean.validation = test::brightness_task(64);
  clean.indices = torch::arange(192);
  const models::ModelSpec spec{"mnist-cnn", 1, 2, 8, 8};
  models::Classifier model = models::create_model(spec);
  FinetuneOptions options;
  options.auto_lr = false;
  options.patience = 2;
  options.train.epochs = 12;
  options.train.lr = 0.05;
  options.train.batch_size = 32;
  options.train.schedule = train::Schedule::kConstant;
  options.train.quiet = true;
  std::vector<double> val_acc;  // per epoch, measured by the evaluation hook
  FinetuneResult run = finetune(model, spec, clean, options, [&](const models::Classifier& m) {
    val_acc.push_back(train::accuracy(m, clean.validation, 500));
    return std::optional<train::Metrics>{};
  });
  ASSERT_EQ(run.records.size(), val_acc.size());
  ASSERT_TRUE(run.best_epoch.has_value());
  const auto best = std::max_element(val_acc.begin(), val_acc.end());
  EXPECT_EQ(*run.best_epoch, static_cast<int>(best - val_acc.begin()) + 1);
  EXPECT_LT(run.records.size(), 12u);
  EXPECT_EQ(static_cast<int>(run.records.size()), *run.best_epoch + options.patience);
  // The weights kept are the best epoch's, not the last.
  EXPECT_DOUBLE_EQ(train::accuracy(run.model, clean.validation, 500), *best);
  EXPECT_DOUBLE_EQ(*run.validation_acc, *best);

  options.patience = 1;
  clean.validation = data::Dataset{};
  EXPECT_THROW(finetune(model, spec, clean, options), UserError);
}

}  // namespace
}  // namespace nad::defenses
