#include "nad/models/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "nad/util/error.h"
#include "support/python.h"
#include "support/temp_dir.h"

namespace nad::models {
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

TEST(Checkpoint, WeightsFingerprintFollowsTheWeightsNotTheFile) {
  test::TempDir dir;
  torch::manual_seed(2);
  models::ModelSpec spec{"mnist-cnn", 1, 4, 8, 8};
  models::Classifier model = models::create_model(spec);
  const std::string fingerprint = weights_fingerprint(model);
  EXPECT_EQ(fingerprint.rfind("sha256:", 0), 0u);
  EXPECT_EQ(fingerprint.size(), 7u + 64u);
  // The same weights through nad's model.pt and through a bare PyTorch state_dict.
  save_checkpoint(dir / "model.pt", model, spec);
  EXPECT_EQ(weights_fingerprint(load_checkpoint(dir / "model.pt").model), fingerprint);
  NamedTensors state;
  for (const auto& [name, tensor] : model_state(model)) state.emplace_back(name, tensor.detach());
  io::write_torch_state_dict(dir / "bare.pt", state, io::TorchFormat::kLegacy);
  LoadOptions bare;
  bare.input_shape = {1, 8, 8};
  EXPECT_EQ(weights_fingerprint(load_checkpoint(dir / "bare.pt", bare).model), fingerprint);
  // One weight changed by the smallest step, or a buffer, gives another fingerprint.
  {
    torch::NoGradGuard no_grad;
    torch::Tensor w = model->named_parameters()["fc2.bias"];
    w[0] = std::nextafter(w[0].item<float>(), 1.0f);
  }
  EXPECT_NE(weights_fingerprint(model), fingerprint);
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
}  // namespace nad::models

namespace nad::models {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = fs::path(NAD_FIXTURES_DIR) / "checkpoints";

// Loads `file`, runs the expected file's input through it in eval mode and compares logits
// and group features with PyTorch's.
void expect_parity(const fs::path& file, const fs::path& expected_file, const std::string& arch,
                   const LoadOptions& options = {}) {
  SCOPED_TRACE(file.filename().string());
  LoadedModel loaded = load_checkpoint(file, options);
  EXPECT_EQ(loaded.spec.arch, arch);
  EXPECT_EQ(loaded.spec.num_classes, 10);
  std::map<std::string, torch::Tensor> expected;
  for (const auto& [name, tensor] : io::read_torch_state_dict(expected_file).tensors) {
    expected[name] = tensor;
  }
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  const models::ModelOutput out = loaded.model->forward(expected.at("input"));
  EXPECT_LT((out.logits - expected.at("logits")).abs().max().item<float>(), 1e-4);
  ASSERT_EQ(out.features.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const torch::Tensor& want = expected.at("feature" + std::to_string(i));
    ASSERT_EQ(out.features[i].sizes(), want.sizes());
    EXPECT_LT((out.features[i] - want).abs().max().item<float>(), 1e-4) << "feature " << i;
  }
}

TEST(PyTorchCheckpoint, WrnFixturesReproducePyTorchOutputs) {
  expect_parity(kFixtures / "wrn16_zip.pt", kFixtures / "wrn16_expected.pt", "wrn-16-1");
  expect_parity(kFixtures / "wrn16_legacy.pt", kFixtures / "wrn16_expected.pt", "wrn-16-1");
  LoadOptions explicit_arch;
  explicit_arch.arch = "wrn-16-1";
  explicit_arch.num_classes = 10;
  expect_parity(kFixtures / "wrn16_zip.pt", kFixtures / "wrn16_expected.pt", "wrn-16-1",
                explicit_arch);
  for (const char* file :
       {"wrn10_wrapped_zip.pt", "wrn10_module_legacy.pt", "wrn10_params_zip.pt"}) {
    expect_parity(kFixtures / file, kFixtures / "wrn10_expected.pt", "wrn-10-1");
  }
  // The record says cifar10, which implies BackdoorBench's normalisation; the expected logits
  // were computed on the raw inputs.
  LoadOptions raw_inputs;
  raw_inputs.input_norm = models::InputNorm{};
  expect_parity(kFixtures / "wrn10_attack_result.pt", kFixtures / "wrn10_expected.pt", "wrn-10-1",
                raw_inputs);
  expect_parity(kFixtures / "wrn10_half_legacy.pt", kFixtures / "wrn10_half_expected.pt",
                "wrn-10-1");
}

TEST(PyTorchCheckpoint, AttackResultLoadsWithOneWarningNamingWhatWasSkipped) {
  LoadedModel loaded = load_checkpoint(kFixtures / "wrn10_attack_result.pt");
  // The record names its architecture and dataset, which implies BackdoorBench's normalisation.
  EXPECT_EQ(loaded.description,
            "wrn-10-1 (from the BackdoorBench record's model_name), 10 classes; zip format, "
            "weights under 'model'; input normalisation cifar10 (mean 0.4914,0.4822,0.4465 / std "
            "0.247,0.243,0.261) (BackdoorBench record (clean_data 'cifar10'))");
  ASSERT_EQ(loaded.warnings.size(), 1u);
  EXPECT_NE(loaded.warnings[0].find("PIL.Image.Image"), std::string::npos) << loaded.warnings[0];
  EXPECT_NE(loaded.warnings[0].find("prepro_cls_DatasetBD_v2"), std::string::npos);
}

TEST(PyTorchCheckpoint, WrongArchitectureListsTheKeys) {
  LoadOptions options;
  options.arch = "wrn-16-1";
  try {
    load_checkpoint(kFixtures / "wrn10_wrapped_zip.pt", options);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("wrn10_wrapped_zip.pt"), std::string::npos) << message;
    EXPECT_NE(message.find("missing keys: block1.layer.1.bn1.bias"), std::string::npos) << message;
    EXPECT_NE(message.find("--allow-partial"), std::string::npos) << message;
  }
  options.allow_partial = true;
  LoadedModel partial = load_checkpoint(kFixtures / "wrn10_wrapped_zip.pt", options);
  ASSERT_EQ(partial.warnings.size(), 1u);
  EXPECT_NE(partial.warnings[0].find("missing keys"), std::string::npos);
}

TEST(PyTorchCheckpoint, NamesAreMappedOntoNadModels) {
  models::Classifier resnet = models::create_model({"resnet18", 3, 10, 32, 32});
  NamedTensors state = {{"module.fc.weight", torch::zeros({10, 512})},
                        {"module.fc.bias", torch::zeros({10})},
                        {"module.conv1.weight", torch::zeros({64, 3, 3, 3})}};
  const NamedTensors mapped = map_names(state, resnet);
  EXPECT_EQ(mapped[0].first, "linear.weight");
  EXPECT_EQ(mapped[1].first, "linear.bias");
  EXPECT_EQ(mapped[2].first, "conv1.weight");
  // The WRN wants `fc`: names stay.
  models::Classifier wrn = models::create_model({"wrn-10-1", 3, 10, 32, 32});
  EXPECT_EQ(map_names({{"fc.weight", torch::zeros({10, 64})}}, wrn)[0].first, "fc.weight");

  EXPECT_EQ(guess_arch(model_state(wrn)), "wrn-10-1");
  EXPECT_EQ(guess_arch(model_state(models::create_model({"wrn-16-4", 3, 10, 32, 32}))), "wrn-16-4");
  EXPECT_EQ(guess_arch(model_state(resnet)), "resnet18");
  EXPECT_EQ(guess_arch(model_state(models::create_model({"preact-resnet18", 3, 10, 32, 32}))),
            "preact-resnet18");
  EXPECT_EQ(guess_arch(model_state(models::create_model({"mnist-cnn", 1, 10, 28, 28}))),
            "mnist-cnn");
  EXPECT_EQ(guess_arch({{"encoder.weight", torch::zeros({1})}}), "");
}

TEST(PyTorchCheckpoint, ForeignArchEntriesAreIgnoredAndArchOptionWins) {
  test::TempDir dir;
  models::Classifier model = models::create_model({"wrn-10-1", 3, 10, 32, 32});
  c10::Dict<std::string, at::Tensor> state;
  for (const auto& [name, tensor] : model_state(model)) state.insert(name, tensor.detach());
  // A training script's checkpoint whose "arch" names a model nad does not have.
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("arch", std::string("resnet50"));
  top.insert("state_dict", state);
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(top));
  test::write_bytes(dir / "x.pt", bytes);
  LoadedModel loaded = load_checkpoint(dir / "x.pt");
  EXPECT_EQ(loaded.spec.arch, "wrn-10-1");
  EXPECT_NE(loaded.description.find("guessed"), std::string::npos) << loaded.description;

  // nad's own model.pt says its arch; --arch still wins (and then does not fit).
  save_checkpoint(dir / "model.pt", model, {"wrn-10-1", 3, 10, 32, 32});
  EXPECT_NE(load_checkpoint(dir / "model.pt").description.find("as the file says"),
            std::string::npos);
  LoadOptions options;
  options.arch = "resnet18";
  EXPECT_THROW(load_checkpoint(dir / "model.pt", options), UserError);
}

TEST(PyTorchCheckpoint, OldCheckpointsWithoutNumBatchesTrackedLoad) {
  models::Classifier model = models::create_model({"wrn-10-1", 3, 10, 32, 32});
  NamedTensors state;
  for (const auto& [name, tensor] : model_state(model)) {
    if (name.find("num_batches_tracked") == std::string::npos) state.emplace_back(name, tensor);
  }
  EXPECT_TRUE(load_state_dict(model, state, "old.pt").empty());
}

TEST(PyTorchCheckpoint, ResNetsFromPyTorchReproduceItsOutputs) {
  if (!test::python_torch_available()) GTEST_SKIP() << "no /usr/bin/python3 with torch";
  test::TempDir dir;
  std::string output;
  ASSERT_EQ(test::run_python_script("make_checkpoint_fixtures.py", "resnets " + dir.path().string(),
                                    &output),
            0)
      << output;
  // BackdoorBench's PreAct-ResNet-18 under "model"; a ResNet-18 with `fc` naming saved from
  // nn.DataParallel under "net" in the legacy format.
  expect_parity(dir / "preact_resnet18_zip.pt", dir / "preact_resnet18_expected.pt",
                "preact-resnet18");
  expect_parity(dir / "resnet18_fc_legacy.pt", dir / "resnet18_expected.pt", "resnet18");
}

TEST(PyTorchCheckpoint, ExportedModelsGiveTheSameLogitsInPyTorch) {
  if (!test::python_torch_available()) GTEST_SKIP() << "no /usr/bin/python3 with torch";
  test::TempDir dir;
  torch::manual_seed(3);
  const torch::Tensor input = torch::rand({2, 3, 32, 32});
  io::write_torch_state_dict(dir / "input.pt", {{"input", input}}, io::TorchFormat::kZip);
  for (const auto& [arch, format] : std::vector<std::pair<std::string, io::TorchFormat>>{
           {"wrn-10-1", io::TorchFormat::kZip}, {"preact-resnet18", io::TorchFormat::kLegacy}}) {
    SCOPED_TRACE(arch);
    models::ModelSpec spec{arch, 3, 10, 32, 32};
    models::Classifier model = models::create_model(spec);
    {
      // Non-trivial BatchNorm statistics.
      torch::NoGradGuard no_grad;
      for (auto& item : model->named_buffers()) {
        if (item.key().find("running_mean") != std::string::npos) item.value().normal_(0, 0.1);
        if (item.key().find("running_var") != std::string::npos) item.value().uniform_(0.5, 1.5);
      }
    }
    model->eval();
    NamedTensors state;
    for (const auto& [name, tensor] : model_state(model)) state.emplace_back(name, tensor.detach());
    io::write_torch_state_dict(dir / "exported.pt", state, format);
    std::string output;
    ASSERT_EQ(test::run_python_script("make_checkpoint_fixtures.py",
                                      "roundtrip " + (dir / "exported.pt").string() + " " + arch +
                                          " 10 " + (dir / "input.pt").string() + " " +
                                          (dir / "torch_out.pt").string(),
                                      &output),
              0)
        << output;
    std::map<std::string, torch::Tensor> torch_out;
    for (const auto& [name, tensor] : io::read_torch_state_dict(dir / "torch_out.pt").tensors) {
      torch_out[name] = tensor;
    }
    torch::NoGradGuard no_grad;
    const torch::Tensor logits = model->forward(input).logits;
    EXPECT_LT((logits - torch_out.at("logits")).abs().max().item<float>(), 1e-4);
  }
}

}  // namespace
}  // namespace nad::models
