#include "nad/io/checkpoint.h"

#include <gtest/gtest.h>

#include <fstream>

#include "nad/util/error.h"
#include "support/temp_dir.h"

namespace nad::io {
namespace {

TEST(Checkpoint, RoundTripsWeightsBuffersAndSpec) {
  test::TempDir dir;
  torch::manual_seed(1);
  models::ModelSpec spec{"wrn-10-1", 3, 5, 32, 32};
  models::Classifier model = models::create_model(spec);
  model->train();
  model->forward(torch::rand({4, 3, 32, 32}));
  save_checkpoint(dir / "model.pt", model, spec);

  LoadedModel loaded = load_checkpoint(dir / "model.pt");
  EXPECT_EQ(loaded.spec.arch, "wrn-10-1");
  EXPECT_EQ(loaded.spec.num_classes, 5);
  EXPECT_EQ(loaded.spec.in_channels, 3);
  auto original = model->named_buffers();
  for (const auto& item : loaded.model->named_buffers()) {
    EXPECT_TRUE(item.value().equal(original[item.key()])) << item.key();
  }
  auto params = model->named_parameters();
  for (const auto& item : loaded.model->named_parameters()) {
    EXPECT_TRUE(item.value().equal(params[item.key()])) << item.key();
  }
  // No temporary file is left beside it.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(Checkpoint, MismatchedKeysAreListed) {
  models::Classifier model = models::create_model({"wrn-10-1", 3, 10, 32, 32});
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (const auto& item : model->named_parameters()) {
    if (item.key() == "fc.bias") continue;
    if (item.key() == "fc.weight") {
      state.emplace_back(item.key(), torch::zeros({3, 3}));
      continue;
    }
    state.emplace_back(item.key(), item.value());
  }
  for (const auto& item : model->named_buffers()) state.emplace_back(item.key(), item.value());
  state.emplace_back("extra.weight", torch::zeros({1}));
  try {
    load_state_dict(model, state, "ckpt.pt");
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("ckpt.pt"), std::string::npos);
    EXPECT_NE(message.find("missing keys: fc.bias"), std::string::npos);
    EXPECT_NE(message.find("unexpected keys: extra.weight"), std::string::npos);
    EXPECT_NE(message.find("wrong shapes: fc.weight"), std::string::npos);
  }
}

TEST(Checkpoint, GarbageAndMissingFilesAreUserErrors) {
  test::TempDir dir;
  { std::ofstream(dir / "junk.pt") << "not a checkpoint"; }
  EXPECT_THROW(load_checkpoint(dir / "junk.pt"), UserError);
  EXPECT_THROW(load_checkpoint(dir / "absent.pt"), UserError);
}

}  // namespace
}  // namespace nad::io
