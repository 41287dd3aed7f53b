// TorchScript models as nad models: logits and group features equal PyTorch's (forward hooks on
// the same submodules), scripted and traced, with randomised BatchNorm statistics.
#include <gtest/gtest.h>

#include "nad/models/checkpoint.h"
#include "nad/models/torchscript.h"
#include "nad/util/error.h"
#include "support/cli.h"
#include "support/python.h"
#include "support/temp_dir.h"

namespace nad::models {
namespace {

namespace fs = std::filesystem;

torch::Tensor read_floats(const fs::path& file, std::vector<int64_t> shape) {
  const std::string bytes = test::read_text(file);
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  EXPECT_EQ(bytes.size(), static_cast<size_t>(count * 4)) << file;
  return torch::from_blob(const_cast<char*>(bytes.data()), shape, torch::kFloat).clone();
}

class TorchScriptModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_torch_available()) return;
    dir_ = new test::TempDir();
    std::string output;
    made_ = test::run_python_script("make_torchscript_models.py", "parity " + dir_->path().string(),
                                    &output) == 0;
    if (!made_) std::fprintf(stderr, "%s\n", output.c_str());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!test::python_torch_available()) GTEST_SKIP() << "no /usr/bin/python3 with torch";
    ASSERT_TRUE(made_) << "make_torchscript_models.py parity failed";
  }
  static models::LoadedModel load(const std::string& name) {
    models::LoadOptions options;
    options.input_shape = {3, 32, 32};
    return models::load_checkpoint(*dir_ / name, options);
  }
  static test::TempDir* dir_;
  static bool made_;
};
test::TempDir* TorchScriptModel::dir_ = nullptr;
bool TorchScriptModel::made_ = false;

TEST_F(TorchScriptModel, LogitsAndGroupFeaturesArePyTorchs) {
  const torch::Tensor inputs = read_floats(*dir_ / "inputs.bin", {2, 3, 32, 32});
  const torch::Tensor logits = read_floats(*dir_ / "logits.bin", {2, 10});
  const std::vector<torch::Tensor> features = {read_floats(*dir_ / "layer1.bin", {2, 16, 32, 32}),
                                               read_floats(*dir_ / "layer2.bin", {2, 32, 16, 16}),
                                               read_floats(*dir_ / "layer3.bin", {2, 64, 8, 8})};
  for (const char* name : {"scripted.ts", "traced.ts"}) {
    SCOPED_TRACE(name);
    models::LoadedModel loaded = load(name);
    EXPECT_TRUE(is_torchscript_arch(loaded.spec.arch));
    EXPECT_EQ(loaded.spec.num_classes, 10);
    // Proposed without --groups: the three deepest stages with maps larger than 1x1 (the head
    // returns a 2-D tensor and is no candidate).
    EXPECT_EQ(loaded.model->group_names(),
              (std::vector<std::string>{"layer1", "layer2", "layer3"}));
    loaded.model->eval();
    torch::NoGradGuard no_grad;
    const ModelOutput out = loaded.model->forward(inputs);
    EXPECT_LT((out.logits - logits).abs().max().item<double>(), 1e-4);
    ASSERT_EQ(out.features.size(), 3u);
    for (size_t g = 0; g < 3; ++g) {
      EXPECT_LT((out.features[g] - features[g]).abs().max().item<double>(), 1e-4) << g;
    }
    // Named groups, one of them inside a submodule (its call appears once layer2 is inlined).
    ModelSpec spec = loaded.spec;
    spec.groups = {"layer2.0", "layer3"};
    Classifier chosen = clone_model(loaded.model, spec);
    chosen->eval();
    const ModelOutput named = chosen->forward(inputs);
    EXPECT_EQ(named.features[0].sizes(), (std::vector<int64_t>{2, 32, 16, 16}));  // the conv
    EXPECT_LT((named.features[1] - features[2]).abs().max().item<double>(), 1e-4);
    EXPECT_LT((named.logits - logits).abs().max().item<double>(), 1e-4);
    spec.groups = {"layer9"};
    EXPECT_THROW(create_model(spec), UserError);
  }
}

// The parameters nad trains are the module's own: a step changes what forward computes, and
// train()/eval() reach the module's BatchNorms.
TEST_F(TorchScriptModel, TrainsTheModulesOwnParameters) {
  models::LoadedModel loaded = load("scripted.ts");
  const torch::Tensor inputs = read_floats(*dir_ / "inputs.bin", {2, 3, 32, 32});
  std::vector<std::string> names;
  for (const auto& p : loaded.model->named_parameters()) names.push_back(p.key());
  EXPECT_NE(std::find(names.begin(), names.end(), "layer2.0.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "head.hidden.weight"), names.end());
  loaded.model->eval();
  const torch::Tensor before = loaded.model->forward(inputs).logits.detach().clone();
  loaded.model->train();
  torch::optim::SGD sgd(loaded.model->parameters(), torch::optim::SGDOptions(0.1));
  const torch::Tensor loss =
      torch::cross_entropy_loss(loaded.model->forward(inputs).logits, torch::tensor({1, 2}));
  loss.backward();
  sgd.step();
  loaded.model->eval();
  const torch::Tensor after = loaded.model->forward(inputs).logits;
  EXPECT_GT((after - before).abs().max().item<double>(), 1e-4);
  // The running statistics moved in the training forward.
  EXPECT_EQ(loaded.model->named_buffers()["layer1.1.num_batches_tracked"].item<int64_t>(), 1);
}

// The same torchvision ResNet-18 as nad's built-in tv-resnet18 and as a scripted archive: equal
// logits and groups, and equal again after the same SGD steps in training mode (BatchNorm batch
// statistics, running averages, weight decay).
TEST_F(TorchScriptModel, TrainsLikeTheBuiltInArchitecture) {
  std::string output;
  ASSERT_EQ(test::run_python_script("make_torchscript_models.py",
                                    "torchvision " + dir_->path().string(), &output),
            0)
      << output;
  models::LoadOptions options;
  options.input_shape = {3, 32, 32};
  models::LoadedModel builtin = models::load_checkpoint(*dir_ / "tv.pt", options);
  models::LoadedModel script = models::load_checkpoint(*dir_ / "tv.ts", options);
  ASSERT_EQ(builtin.spec.arch, "tv-resnet18");
  EXPECT_EQ(script.model->group_names(), builtin.model->group_names());
  torch::manual_seed(5);
  const torch::Tensor x = torch::rand({8, 3, 32, 32});
  const torch::Tensor y = torch::randint(0, 10, {8});
  std::vector<torch::optim::SGD> sgd;
  for (auto* m : {&builtin, &script}) {
    sgd.emplace_back(m->model->parameters(),
                     torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(5e-4));
  }
  for (int step = 0; step < 3; ++step) {
    std::vector<torch::Tensor> logits;
    for (size_t i = 0; i < 2; ++i) {
      models::LoadedModel& m = i == 0 ? builtin : script;
      m.model->train();
      const ModelOutput out = m.model->forward(x);
      logits.push_back(out.logits.detach());
      sgd[i].zero_grad();
      torch::cross_entropy_loss(out.logits, y).backward();
      sgd[i].step();
    }
    EXPECT_LT((logits[0] - logits[1]).abs().max().item<double>(), 1e-3) << "step " << step;
  }
  builtin.model->eval();
  script.model->eval();
  torch::NoGradGuard no_grad;
  const ModelOutput a = builtin.model->forward(x);
  const ModelOutput b = script.model->forward(x);
  EXPECT_LT((a.logits - b.logits).abs().max().item<double>(), 1e-3);
  for (size_t g = 0; g < a.features.size(); ++g) {
    EXPECT_LT((a.features[g] - b.features[g]).abs().max().item<double>(), 1e-3) << g;
  }
}

}  // namespace
}  // namespace nad::models
