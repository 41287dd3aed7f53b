// nad's copies of torchvision's architectures (tv-resnet*, vgg*, mobilenet_*, efficientnet_b0,
// densenet121): parity with Debian's python3-torchvision in both directions, and the facts
// nad relies on (attention groups by input size, recognition, consumers, bf16 training).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "nad/attacks/trojan.h"
#include "nad/defenses/prune.h"
#include "nad/models/checkpoint.h"
#include "nad/models/flops.h"
#include "nad/models/inference.h"
#include "nad/models/registry.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "support/cli.h"
#include "support/python.h"
#include "support/temp_dir.h"

namespace nad::models {
namespace {

namespace fs = std::filesystem;

bool torchvision_available() {
  static const bool available =
      test::python_torch_available() &&
      test::run_shell(std::string(test::kPython) + " -c 'import torchvision'").exit_code == 0;
  return available;
}

#define NAD_REQUIRE_TORCHVISION()                                                           \
  if (!torchvision_available()) {                                                           \
    GTEST_SKIP() << "no /usr/bin/python3 with torch and torchvision (python3-torchvision)"; \
  }

// Restores the inference path's switch when a test ends.
struct InferencePathSwitch {
  ~InferencePathSwitch() { set_inference_path_enabled(true); }
};

struct ComputeOptionsReset {
  ~ComputeOptionsReset() { set_compute_options(ComputeOptions{}); }
};

// Gives every BatchNorm statistics and affine parameters away from the identity, and every
// bias a value, so that a misplaced one shows (as scripts/torchvision_parity.py does on
// torchvision's side). Running variances in [1, 2] keep the deep models' activations O(1): with
// variances down to 0.5 they grow to the hundreds in ResNet-50, where float32 rounding alone
// (NCHW against channels-last, in torchvision itself) differs by 1e-4.
void randomise(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& module : model.modules(/*include_self=*/false)) {
    if (auto* bn = module->as<BatchNorm2dImpl>()) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.normal_(0, 0.1);
      bn->running_mean.normal_(0, 0.1);
      bn->running_var.uniform_(1, 2);
    } else if (auto* conv = module->as<torch::nn::Conv2d>()) {
      if (conv->bias.defined()) conv->bias.normal_(0, 0.1);
    } else if (auto* linear = module->as<torch::nn::Linear>()) {
      linear->bias.normal_(0, 0.1);
    }
  }
  model.eval();
}

struct Case {
  std::string arch;
  int64_t size;
  std::string stem() const { return arch + "_" + std::to_string(size); }
  std::string argument() const { return arch + ":10:" + std::to_string(size); }
};

// Every new architecture at 32x32, and the cheap ones also at 64x64 and their native 224x224;
// VGG at 64x64 too, where its last map (2x2) makes the 7x7 pool's positions differ, so that the
// order in which the classifier reads them shows.
const std::vector<Case>& parity_cases() {
  static const std::vector<Case> cases = {
      {"tv-resnet18", 32},
      {"tv-resnet34", 32},
      {"tv-resnet50", 32},
      {"vgg11", 32},
      {"vgg16", 32},
      {"vgg19", 32},
      {"vgg19_bn", 32},
      {"mobilenet_v2", 32},
      {"mobilenet_v3_large", 32},
      {"efficientnet_b0", 32},
      {"densenet121", 32},
      {"tv-resnet18", 64},
      {"vgg11", 64},
      {"tv-resnet18", 224},
      {"mobilenet_v2", 224},
      {"mobilenet_v3_large", 224},
      {"efficientnet_b0", 224},
      {"densenet121", 64},
  };
  return cases;
}

std::string case_arguments() {
  std::string arguments;
  for (const Case& c : parity_cases()) arguments += " " + c.argument();
  return arguments;
}

std::map<std::string, torch::Tensor> read_tensors(const fs::path& file) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, tensor] : io::read_torch_state_dict(file).tensors) out[name] = tensor;
  return out;
}

double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// Logits and group features of `model` against torchvision's outputs (`stage:<name>`); returns
// the largest differences (logits, features).
std::pair<double, double> compare(const Classifier& model, const torch::Tensor& input,
                                  std::map<std::string, torch::Tensor>& torch_out) {
  torch::NoGradGuard no_grad;
  const ModelOutput out = model->forward(input);
  const double logits = max_difference(out.logits, torch_out.at("logits"));
  double features = 0;
  const std::vector<std::string> groups = model->group_names();
  EXPECT_EQ(out.features.size(), groups.size());
  for (size_t g = 0; g < groups.size() && g < out.features.size(); ++g) {
    const auto it = torch_out.find("stage:" + groups[g]);
    if (it == torch_out.end()) {
      ADD_FAILURE() << "torchvision has no stage " << groups[g];
      continue;
    }
    EXPECT_EQ(out.features[g].sizes(), it->second.sizes()) << groups[g];
    EXPECT_GT(out.features[g].size(2) * out.features[g].size(3), 1) << groups[g] << " is 1x1";
    features = std::max(features, max_difference(out.features[g], it->second));
  }
  return {logits, features};
}

// A torchvision state_dict saved by Python loads into nad with no --arch (the weight names say
// which architecture it is) and gives torchvision's logits and group features, through the
// inference path (BatchNorm folded) and layer by layer.
TEST(TorchvisionParity, TorchvisionStateDictsLoadIntoNad) {
  NAD_REQUIRE_TORCHVISION();
  InferencePathSwitch restore;
  test::TempDir dir;
  std::string output;
  ASSERT_EQ(test::run_python_script("torchvision_parity.py",
                                    "make " + dir.path().string() + case_arguments(), &output),
            0)
      << output;
  for (const Case& c : parity_cases()) {
    SCOPED_TRACE(c.stem());
    models::LoadOptions options;
    options.input_shape = {3, c.size, c.size};  // the dataset's, as the commands pass it
    models::LoadedModel loaded = models::load_checkpoint(dir / (c.stem() + ".pt"), options);
    EXPECT_EQ(loaded.spec.arch, c.arch);
    EXPECT_EQ(loaded.spec.num_classes, 10);
    EXPECT_EQ(loaded.spec.in_channels, 3);
    fs::remove(dir / (c.stem() + ".pt"));
    auto expected = read_tensors(dir / (c.stem() + "_expected.pt"));
    loaded.model->eval();
    set_inference_path_enabled(true);
    const auto [fused_logits, fused_features] =
        compare(loaded.model, expected.at("input"), expected);
    set_inference_path_enabled(false);
    const auto [logits, features] = compare(loaded.model, expected.at("input"), expected);
    set_inference_path_enabled(true);
    EXPECT_LT(fused_logits, 1e-4);
    EXPECT_LT(fused_features, 1e-4);
    EXPECT_LT(logits, 1e-4);
    EXPECT_LT(features, 1e-4);
    std::printf(
        "torchvision -> nad %-18s %3lldx%-3lld max |diff| logits %.2e features %.2e "
        "(folded BatchNorm: logits %.2e features %.2e)\n",
        c.arch.c_str(), static_cast<long long>(c.size), static_cast<long long>(c.size), logits,
        features, fused_logits, fused_features);
  }
}

// nad's model.pt (save_checkpoint) loads strictly into torchvision.models.X(num_classes=10) and
// gives nad's logits and group features there.
TEST(TorchvisionParity, NadExportsLoadIntoTorchvision) {
  NAD_REQUIRE_TORCHVISION();
  test::TempDir dir;
  std::map<std::string, ModelOutput> nad_out;
  std::map<std::string, std::vector<std::string>> groups;
  torch::manual_seed(5);
  for (const Case& c : parity_cases()) {
    const ModelSpec spec{c.arch, 3, 10, c.size, c.size};
    Classifier model = create_model(spec);
    randomise(*model);
    models::save_checkpoint(dir / (c.stem() + "_nad.pt"), model, spec);
    const torch::Tensor input = torch::rand({2, 3, c.size, c.size});
    io::write_torch_state_dict(dir / (c.stem() + "_input.pt"), {{"input", input}},
                               io::TorchFormat::kZip);
    torch::NoGradGuard no_grad;
    nad_out[c.stem()] = model->forward(input);
    groups[c.stem()] = model->group_names();
  }
  std::string output;
  ASSERT_EQ(test::run_python_script("torchvision_parity.py",
                                    "check " + dir.path().string() + case_arguments(), &output),
            0)
      << output;
  for (const Case& c : parity_cases()) {
    SCOPED_TRACE(c.stem());
    auto torch_out = read_tensors(dir / (c.stem() + "_torch.pt"));
    const ModelOutput& out = nad_out.at(c.stem());
    const double logits = max_difference(out.logits, torch_out.at("logits"));
    double features = 0;
    ASSERT_EQ(out.features.size(), groups.at(c.stem()).size());
    for (size_t g = 0; g < out.features.size(); ++g) {
      const std::string key = "stage:" + groups.at(c.stem())[g];
      ASSERT_TRUE(torch_out.count(key)) << key;
      features = std::max(features, max_difference(out.features[g], torch_out.at(key)));
    }
    EXPECT_LT(logits, 1e-4);
    EXPECT_LT(features, 1e-4);
    std::printf("nad -> torchvision %-18s %3lldx%-3lld max |diff| logits %.2e features %.2e\n",
                c.arch.c_str(), static_cast<long long>(c.size), static_cast<long long>(c.size),
                logits, features);
  }
}

// The variants without a parity run above have torchvision's names and shapes exactly.
TEST(TorchvisionParity, EveryVggVariantHasTorchvisionsNamesAndShapes) {
  NAD_REQUIRE_TORCHVISION();
  const std::vector<std::string> archs = {"vgg11_bn", "vgg13", "vgg13_bn", "vgg16_bn"};
  std::string arguments = "names 10";
  for (const auto& arch : archs) arguments += " " + arch;
  std::string output;
  ASSERT_EQ(test::run_python_script("torchvision_parity.py", arguments, &output), 0) << output;
  std::map<std::string, std::set<std::string>> expected;
  std::istringstream lines(output);
  std::string arch, name, shape;
  while (lines >> arch >> name >> shape) expected[arch].insert(name + " " + shape);
  for (const auto& a : archs) {
    SCOPED_TRACE(a);
    std::set<std::string> ours;
    for (const auto& [n, tensor] : models::model_state(create_model({a, 3, 10, 32, 32}))) {
      std::string s;
      for (int64_t d : tensor.sizes()) s += (s.empty() ? "" : "x") + std::to_string(d);
      ours.insert(n + " " + (s.empty() ? "-" : s));
    }
    EXPECT_EQ(ours, expected[a]);
  }
}

std::vector<std::string> groups_of(const std::string& arch, int64_t size) {
  return create_model({arch, 3, 10, size, size})->group_names();
}

// The three deepest stages whose maps are larger than 1x1 at the model's input size.
TEST(TorchvisionModels, AttentionGroupsFollowTheInputSize) {
  using Names = std::vector<std::string>;
  EXPECT_EQ(groups_of("tv-resnet18", 32), (Names{"layer1", "layer2", "layer3"}));
  EXPECT_EQ(groups_of("tv-resnet18", 64), (Names{"layer2", "layer3", "layer4"}));
  EXPECT_EQ(groups_of("tv-resnet18", 224), (Names{"layer2", "layer3", "layer4"}));
  EXPECT_EQ(groups_of("tv-resnet50", 32), (Names{"layer1", "layer2", "layer3"}));
  EXPECT_EQ(groups_of("vgg16", 32), (Names{"features.9", "features.16", "features.23"}));
  EXPECT_EQ(groups_of("vgg16_bn", 224), (Names{"features.23", "features.33", "features.43"}));
  EXPECT_EQ(groups_of("mobilenet_v2", 32), (Names{"features.3", "features.6", "features.13"}));
  EXPECT_EQ(groups_of("mobilenet_v2", 224), (Names{"features.6", "features.13", "features.18"}));
  EXPECT_EQ(groups_of("mobilenet_v3_large", 32),
            (Names{"features.3", "features.6", "features.12"}));
  EXPECT_EQ(groups_of("mobilenet_v3_large", 224),
            (Names{"features.6", "features.12", "features.16"}));
  EXPECT_EQ(groups_of("efficientnet_b0", 32), (Names{"features.2", "features.3", "features.5"}));
  EXPECT_EQ(groups_of("efficientnet_b0", 224), (Names{"features.3", "features.5", "features.8"}));
  EXPECT_EQ(groups_of("densenet121", 32),
            (Names{"features.denseblock1", "features.denseblock2", "features.denseblock3"}));
  EXPECT_EQ(groups_of("densenet121", 224),
            (Names{"features.denseblock2", "features.denseblock3", "features.denseblock4"}));
  // Fewer stages than three are larger than 1x1 on small inputs; none is an error, and so is an
  // input a stage would shrink to nothing.
  EXPECT_EQ(groups_of("tv-resnet18", 16), (Names{"layer1", "layer2"}));
  EXPECT_EQ(default_betas(create_model({"tv-resnet18", 3, 10, 16, 16})),
            (std::vector<double>{1000, 1000}));
  EXPECT_THROW(create_model({"tv-resnet18", 3, 10, 4, 4}), UserError);
  EXPECT_THROW(create_model({"densenet121", 3, 10, 16, 16}), UserError);
  EXPECT_THROW(create_model({"vgg11", 3, 10, 16, 16}), UserError);
}

// --groups: stages other than the default three, by name, in stage order; the forward returns
// their maps and the logits do not change. A 1x1 or unknown stage lists the candidates.
TEST(TorchvisionModels, GroupsCanNameOtherStages) {
  using Names = std::vector<std::string>;
  ModelSpec spec("tv-resnet18", 3, 10, 64, 64);
  torch::manual_seed(0);
  Classifier model = create_model(spec);
  spec.groups = {"layer3", "layer1"};
  Classifier chosen = clone_model(model, spec);
  EXPECT_EQ(chosen->group_names(), (Names{"layer1", "layer3"}));
  EXPECT_EQ(default_betas(chosen), (std::vector<double>{1000, 1000}));
  model->eval();
  chosen->eval();
  const torch::Tensor x = torch::rand({2, 3, 64, 64});
  const ModelOutput a = model->forward(x);
  const ModelOutput b = chosen->forward(x);
  EXPECT_TRUE(torch::equal(a.logits, b.logits));
  ASSERT_EQ(b.features.size(), 2u);
  EXPECT_EQ(b.features[0].sizes(), (std::vector<int64_t>{2, 64, 16, 16}));
  EXPECT_TRUE(torch::equal(b.features[1], a.features[1]));  // layer3, default group 2 of 3
  spec.groups = {"layer1", "layer2", "layer3", "layer4"};
  EXPECT_EQ(default_betas(create_model(spec)), (std::vector<double>{500, 500, 1000, 1000}));
  for (const Names& bad : {Names{"layer5"}, Names{"layer4"}}) {
    ModelSpec small("tv-resnet18", 3, 10, 32, 32);  // layer4 is 1x1 at 32x32
    small.groups = bad;
    try {
      create_model(small);
      ADD_FAILURE() << bad[0] << " was accepted";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("candidates: layer1 (8x8), layer2 (4x4), layer3 (2x2)"),
                std::string::npos)
          << e.what();
    }
  }
  ModelSpec vgg("vgg11", 3, 10, 32, 32);
  vgg.groups = {"features.2"};
  EXPECT_EQ(create_model(vgg)->group_names(), (Names{"features.2"}));
}

// FLOPs counted from the operators at 224x224 with 1000 classes are torchvision's published
// multiply-adds (its documentation's "GFLOPS") twice, and the parameter counts are its own.
TEST(TorchvisionModels, FlopsAndParametersAreTorchvisions) {
  const std::vector<std::tuple<std::string, double, int64_t>> published = {
      {"tv-resnet18", 1.814, 11689512},    {"tv-resnet50", 4.089, 25557032},
      {"mobilenet_v2", 0.301, 3504872},    {"mobilenet_v3_large", 0.217, 5483032},
      {"efficientnet_b0", 0.386, 5288548}, {"densenet121", 2.834, 7978856}};
  for (const auto& [arch, gmacs, parameters] : published) {
    SCOPED_TRACE(arch);
    const Classifier model = create_model({arch, 3, 1000, 224, 224});
    const ForwardCost cost = measure_forward_cost(model, torch::rand({1, 3, 224, 224}));
    EXPECT_NEAR(cost.total() / 2e9, gmacs, 0.005 * gmacs);
    int64_t count = 0;
    for (const auto& p : model->parameters()) count += p.numel();
    EXPECT_EQ(count, parameters);
  }
}

// One architecture per family (and the deeper ones where their layouts differ) at 32x32; the
// VGGs are the costly ones to build.
const std::vector<std::string>& family_archs() {
  static const std::vector<std::string> archs = {
      "tv-resnet18",        "tv-resnet50",     "vgg11_bn",   "mobilenet_v2",
      "mobilenet_v3_large", "efficientnet_b0", "densenet121"};
  return archs;
}

// The registry's recognisers name each architecture from its own state_dict, and tell the
// torchvision ResNets from the CIFAR ones (7x7 stem) and from each other (block counts, conv3).
TEST(TorchvisionModels, RegistryRecognisesEachArchitecture) {
  for (const std::string arch : {"tv-resnet18", "tv-resnet34", "tv-resnet50", "resnet18",
                                 "preact-resnet18", "vgg11", "vgg13_bn", "vgg19_bn", "mobilenet_v2",
                                 "mobilenet_v3_large", "efficientnet_b0", "densenet121"}) {
    SCOPED_TRACE(arch);
    const Classifier model = create_model({arch, 3, 10, 32, 32});
    EXPECT_EQ(recognise_arch(models::model_state(model)), arch);
    const ArchFamily* family = find_family(arch);
    ASSERT_NE(family, nullptr);
    // The family names the classifier (its rows are the classes) and the first convolution.
    const auto params = model->named_parameters();
    ASSERT_TRUE(family->classifier_weight && family->input_weight);
    const torch::Tensor* head = params.find(family->classifier_weight(arch));
    ASSERT_NE(head, nullptr);
    EXPECT_EQ(head->size(0), 10);
    const torch::Tensor* stem = params.find(family->input_weight(arch));
    ASSERT_NE(stem, nullptr);
    EXPECT_EQ(stem->size(1), 3);
  }
  // Grey inputs: the first convolution reads one channel.
  const Classifier grey = create_model({"mobilenet_v2", 1, 10, 32, 32});
  EXPECT_EQ(grey->named_parameters()["features.0.0.weight"].size(1), 1);
}

TEST(TorchvisionModels, BackdoorBenchNamesForUnchangedTorchvisionModels) {
  EXPECT_EQ(arch_from_foreign_name("resnet18"), "tv-resnet18");
  EXPECT_EQ(arch_from_foreign_name("resnet34"), "tv-resnet34");
  EXPECT_EQ(arch_from_foreign_name("resnet50"), "tv-resnet50");
  EXPECT_EQ(arch_from_foreign_name("preactresnet18"), "preact-resnet18");
  for (const char* same : {"vgg11", "vgg16", "vgg19", "vgg19_bn", "mobilenet_v2",
                           "mobilenet_v3_large", "efficientnet_b0", "densenet121"}) {
    EXPECT_EQ(arch_from_foreign_name(same), same);
  }
  // BackdoorBench builds these differently or nad has no copy: not aliased.
  for (const char* other : {"vit_b_16", "efficientnet_b3", "densenet161", "convnext_tiny"}) {
    EXPECT_EQ(arch_from_foreign_name(other), "");
  }
}

// Weights with torchvision's names under the wrong --arch: the error lists what does not match.
TEST(TorchvisionModels, WrongArchListsTheMismatchedKeys) {
  test::TempDir dir;
  const Classifier model = create_model({"tv-resnet18", 3, 10, 32, 32});
  models::NamedTensors state;
  for (const auto& [name, tensor] : models::model_state(model)) state.emplace_back(name, tensor);
  io::write_torch_state_dict(dir / "resnet18.pt", state, io::TorchFormat::kZip);
  EXPECT_EQ(models::load_checkpoint(dir / "resnet18.pt").spec.arch, "tv-resnet18");
  auto message = [&](const std::string& arch) {
    models::LoadOptions options;
    options.arch = arch;
    try {
      models::load_checkpoint(dir / "resnet18.pt", options);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string deeper = message("tv-resnet34");
  EXPECT_NE(deeper.find("missing keys"), std::string::npos) << deeper;
  EXPECT_NE(deeper.find("layer1.2.conv1.weight"), std::string::npos) << deeper;
  const std::string cifar = message("resnet18");
  EXPECT_NE(cifar.find("wrong shapes"), std::string::npos) << cifar;
  EXPECT_NE(cifar.find("conv1.weight (file [64, 3, 7, 7], model [64, 3, 3, 3])"), std::string::npos)
      << cifar;
  EXPECT_NE(cifar.find("layer2.0.downsample.0.weight"), std::string::npos) << cifar;
  const std::string vgg = message("vgg11");
  EXPECT_NE(vgg.find("unexpected keys"), std::string::npos) << vgg;
  EXPECT_NE(vgg.find("missing keys"), std::string::npos) << vgg;
  EXPECT_NE(vgg.find("classifier.6.weight"), std::string::npos) << vgg;
}

// Fine-pruning and TrojanNN read each group's consumers: every named weight exists and runs
// over the group's channels in dimension 1, and zeroing the last group's consumers (pruning all
// its channels) cuts the input off from the logits, so no reader is missing. The last
// convolution names a module of the model.
TEST(TorchvisionModels, GroupConsumersReadTheGroupsChannels) {
  torch::manual_seed(9);
  for (const std::string& arch : family_archs()) {
    SCOPED_TRACE(arch);
    Classifier model = create_model({arch, 3, 10, 32, 32});
    model->eval();
    const torch::Tensor x = torch::rand({2, 3, 32, 32});
    std::vector<torch::Tensor> features;
    {
      torch::NoGradGuard no_grad;
      features = model->forward(x).features;
    }
    ASSERT_EQ(features.size(), model->group_names().size());
    const auto params = model->named_parameters();
    for (size_t g = 0; g < features.size(); ++g) {
      const int64_t channels = features[g].size(1);
      const auto consumers = group_consumers(model, g);
      ASSERT_FALSE(consumers.empty());
      for (const std::string& name : consumers) {
        const torch::Tensor* w = params.find(name);
        ASSERT_NE(w, nullptr) << name;
        EXPECT_EQ(w->size(1) % channels, 0) << name;
      }
      EXPECT_NO_THROW(attacks::select_trojan_neuron(model, g, channels));
    }

    defenses::apply_channel_mask(model, torch::zeros({features.back().size(1)}, torch::kBool));
    torch::NoGradGuard no_grad;
    const torch::Tensor logits = model->forward(torch::cat({x, 1 - x})).logits;
    EXPECT_LT((logits[0] - logits[2]).abs().max().item<float>(), 1e-5);
    EXPECT_LT((logits[1] - logits[3]).abs().max().item<float>(), 1e-5);
    EXPECT_LT((logits[0] - logits[1]).abs().max().item<float>(), 1e-5);
  }
}

// A training step in bf16 autocast on channels-last tensors runs for every family, changes the
// weights and keeps them fp32; so does evaluation in bf16 (the inference path).
TEST(TorchvisionModels, TrainsInBf16OnChannelsLast) {
  ComputeOptionsReset reset;
  ComputeOptions options;
  options.precision = Precision::kBf16;
  options.channels_last = true;
  set_compute_options(options);
  torch::manual_seed(4);
  for (const std::string& arch : family_archs()) {
    SCOPED_TRACE(arch);
    Classifier model = create_model({arch, 3, 10, 32, 32});
    // Batch 4: with 1x1 maps in the last stage, training-mode BatchNorm on a batch of two
    // normalises two values per channel, and its gradients explode (torchvision's too).
    const torch::Tensor x = to_memory_format(torch::rand({4, 3, 32, 32}));
    ASSERT_TRUE(x.is_contiguous(at::MemoryFormat::ChannelsLast));
    const torch::Tensor labels = torch::tensor({1, 7, 0, 3});
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.001));
    const std::string probe = group_consumers(model, 0).front();
    const torch::Tensor before = model->named_parameters()[probe].detach().clone();
    model->train();
    torch::Tensor loss;
    {
      AutocastScope autocast(torch::kCPU);
      const ModelOutput out = model->forward(x);
      EXPECT_EQ(out.logits.scalar_type(), torch::kBFloat16);
      loss = torch::cross_entropy_loss(out.logits.to(torch::kFloat), labels);
      for (const auto& f : out.features) loss = loss + f.to(torch::kFloat).pow(2).mean() * 1e-3;
    }
    sgd.zero_grad();
    loss.backward();
    sgd.step();
    EXPECT_TRUE(std::isfinite(loss.item<float>()));
    const torch::Tensor after = model->named_parameters()[probe];
    EXPECT_EQ(after.scalar_type(), torch::kFloat);
    EXPECT_FALSE(torch::equal(before, after));
    model->eval();
    torch::NoGradGuard no_grad;
    AutocastScope autocast(torch::kCPU);
    const torch::Tensor logits = model->forward(x).logits;
    EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  }
}

}  // namespace
}  // namespace nad::models
