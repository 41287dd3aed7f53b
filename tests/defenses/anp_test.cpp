#include "nad/defenses/anp.h"

#include <gtest/gtest.h>

#include "nad/util/error.h"

namespace nad::defenses {
namespace {

const models::ModelSpec kSpec{"wrn-16-1", 3, 10, 8, 8};

// A small WRN in double precision (so that the signs of tiny gradients agree between the two
// computations), in training mode as ANP runs it.
models::Classifier make_model() {
  torch::manual_seed(3);
  models::Classifier model = models::create_model(kSpec);
  model->to(torch::kDouble);
  {
    // Non-trivial BatchNorm affines, so that weight and bias both matter.
    torch::NoGradGuard no_grad;
    for (const auto& layer : models::weighted_layers(model)) {
      if (layer.kind != models::LayerKind::kBatchNorm) continue;
      auto p = model->named_parameters();
      p[layer.path + ".weight"].uniform_(0.5, 1.5);
      p[layer.path + ".bias"].uniform_(-0.3, 0.3);
    }
  }
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  model->train();
  return model;
}

struct Batch {
  torch::Tensor inputs, targets;
};
Batch make_batch() {
  torch::manual_seed(4);
  return {torch::rand({6, 3, 8, 8}, torch::kDouble), torch::randint(10, {6}, torch::kLong)};
}

std::vector<std::string> batch_norms(const models::Classifier& model) {
  std::vector<std::string> out;
  for (const auto& layer : models::weighted_layers(model)) {
    if (layer.kind == models::LayerKind::kBatchNorm) out.push_back(layer.path);
  }
  return out;
}

// A copy of `model` whose BatchNorm weights and biases are scaled per channel, and the gradients
// of the cross-entropy on `batch` with respect to those scaled weights and biases.
struct Grads {
  std::vector<torch::Tensor> weight, bias;
};
Grads scaled_grads(const models::Classifier& model, const Batch& batch,
                   const std::vector<torch::Tensor>& weight_scale,
                   const std::vector<torch::Tensor>& bias_scale) {
  models::Classifier copy = models::clone_model(model, kSpec);
  copy->to(torch::kDouble);
  copy->train();
  const auto layers = batch_norms(copy);
  auto p = copy->named_parameters();
  for (auto& t : copy->parameters()) t.set_requires_grad(false);
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < layers.size(); ++i) {
      p[layers[i] + ".weight"].mul_(weight_scale[i]);
      p[layers[i] + ".bias"].mul_(bias_scale[i]);
    }
  }
  for (const auto& l : layers) {
    p[l + ".weight"].set_requires_grad(true);
    p[l + ".bias"].set_requires_grad(true);
  }
  torch::cross_entropy_loss(copy->forward(batch.inputs).logits, batch.targets).backward();
  Grads g;
  for (const auto& l : layers) {
    g.weight.push_back(p[l + ".weight"].grad().clone());
    g.bias.push_back(p[l + ".bias"].grad().clone());
  }
  return g;
}

// The masks change forward exactly as scaling the BatchNorm weights would, and the registered
// parameters are never written.
TEST(Anp, MasksScaleTheBatchNormWeightsTheForwardReads) {
  models::Classifier model = make_model();
  model->eval();
  const Batch batch = make_batch();
  const auto layers = batch_norms(model);
  const torch::Tensor original = model->named_parameters()[layers[2] + ".weight"].clone();
  torch::Tensor masked_logits;
  {
    AnpNeurons neurons(model);
    ASSERT_EQ(neurons.layers(), layers);
    {
      torch::NoGradGuard no_grad;
      neurons.masks()[2][1] = 0.0;
      neurons.masks()[2][4] = 0.5;
    }
    neurons.apply(/*perturbed=*/false);
    torch::NoGradGuard no_grad;
    masked_logits = model->forward(batch.inputs).logits;
  }
  // Restored: the model computes as before.
  EXPECT_TRUE(torch::equal(model->named_parameters()[layers[2] + ".weight"], original));
  torch::NoGradGuard no_grad;
  const torch::Tensor unmasked_logits = model->forward(batch.inputs).logits;
  // The same scaling written into the parameters themselves (then put back).
  torch::Tensor weight = model->named_parameters()[layers[2] + ".weight"];
  weight[1] = 0.0;
  weight[4] *= 0.5;
  const torch::Tensor reference = model->forward(batch.inputs).logits;
  weight.copy_(original);
  EXPECT_TRUE(torch::allclose(masked_logits, reference, 1e-10, 1e-12))
      << (masked_logits - reference).abs().max().item<double>();
  EXPECT_FALSE(torch::allclose(masked_logits, unmasked_logits, 1e-6, 1e-8));
}

// One update without perturbation (eps 0): the authors' loss is alpha * CE, so each mask moves by
// -lr * alpha * dCE/dweight * weight (chain rule through weight * mask), then is clamped.
TEST(Anp, MaskUpdateWithoutPerturbationIsTheChainRuleStep) {
  models::Classifier model = make_model();
  const Batch batch = make_batch();
  const auto layers = batch_norms(model);
  std::vector<torch::Tensor> ones;
  auto p = model->named_parameters();
  for (const auto& l : layers) ones.push_back(torch::ones_like(p[l + ".weight"]));
  const Grads g = scaled_grads(model, batch, ones, ones);

  AnpOptions options;
  options.eps = 0;
  options.alpha = 0.2;
  options.mask_lr = 0.7;
  AnpNeurons neurons(model);
  torch::optim::SGD optimizer(neurons.masks(),
                              torch::optim::SGDOptions(options.mask_lr).momentum(0.9));
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(1);
  anp_step(model, neurons, optimizer, batch.inputs, batch.targets, options, generator);
  int moved = 0, clamped = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const torch::Tensor step =
        options.mask_lr * options.alpha * g.weight[i] * p[layers[i] + ".weight"];
    const torch::Tensor expected = (1 - step).clamp(0, 1).to(torch::kFloat);
    EXPECT_TRUE(torch::allclose(neurons.masks()[i].detach(), expected, 1e-5, 1e-6)) << layers[i];
    moved += (expected != 1).sum().item<int>();
    clamped += (step < 0).sum().item<int>();
  }
  EXPECT_GT(moved, 10);
  EXPECT_GT(clamped, 0);  // masks that would rise above 1 stay at 1
}

// One update with the perturbation (eps 0.4, one step), recomputed by hand: the same uniform
// draw, its signed-gradient ascent through weight * (1 + d) and bias * (1 + e), and the mask step
// from alpha * CE(masked) + (1 - alpha) * CE(masked and perturbed).
TEST(Anp, MaskUpdateWithPerturbationMatchesTheHandComputedStep) {
  models::Classifier model = make_model();
  const Batch batch = make_batch();
  const auto layers = batch_norms(model);
  auto p = model->named_parameters();
  AnpOptions options;  // the authors' eps 0.4, one step, alpha 0.2, lr 0.2

  at::Generator draw = at::make_generator<at::CPUGeneratorImpl>(7);
  std::vector<torch::Tensor> ones, dw, db;
  for (const auto& l : layers) {
    const auto sizes = p[l + ".weight"].sizes();
    ones.push_back(torch::ones(sizes, torch::kDouble));
    dw.push_back(torch::empty(sizes, torch::kFloat)
                     .uniform_(-options.eps, options.eps, draw)
                     .to(torch::kDouble));
    db.push_back(torch::empty(sizes, torch::kFloat)
                     .uniform_(-options.eps, options.eps, draw)
                     .to(torch::kDouble));
  }
  auto plus_one = [](const std::vector<torch::Tensor>& v) {
    std::vector<torch::Tensor> out;
    for (const auto& t : v) out.push_back(1 + t);
    return out;
  };
  const Grads first = scaled_grads(model, batch, plus_one(dw), plus_one(db));
  for (size_t i = 0; i < layers.size(); ++i) {
    dw[i] = dw[i] + options.eps * (first.weight[i] * p[layers[i] + ".weight"]).sign();
    db[i] = db[i] + options.eps * (first.bias[i] * p[layers[i] + ".bias"]).sign();
  }
  const Grads robust = scaled_grads(model, batch, plus_one(dw), plus_one(db));
  const Grads natural = scaled_grads(model, batch, ones, ones);

  AnpNeurons neurons(model);
  torch::optim::SGD optimizer(neurons.masks(),
                              torch::optim::SGDOptions(options.mask_lr).momentum(0.9));
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(7);
  anp_step(model, neurons, optimizer, batch.inputs, batch.targets, options, generator);
  int below_one = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const torch::Tensor w = p[layers[i] + ".weight"];
    const torch::Tensor grad =
        options.alpha * natural.weight[i] * w + (1 - options.alpha) * robust.weight[i] * w;
    const torch::Tensor expected = (1 - options.mask_lr * grad).clamp(0, 1).to(torch::kFloat);
    EXPECT_TRUE(torch::allclose(neurons.masks()[i].detach(), expected, 1e-5, 1e-6)) << layers[i];
    below_one += (expected < 1).sum().item<int>();
  }
  EXPECT_GT(below_one, 10);
}

// Pruning by threshold zeroes the BatchNorm weight (not the bias) of every neuron at or below it;
// by fraction, exactly that share of all neurons, the lowest masks first; the original is kept.
TEST(Anp, PrunesTheLowestMasksInACopy) {
  models::Classifier model = make_model();
  model->to(torch::kFloat);
  const auto layers = batch_norms(model);
  std::vector<torch::Tensor> masks;
  int64_t total = 0;
  for (const auto& l : layers) {
    masks.push_back(torch::ones_like(model->named_parameters()[l + ".weight"]));
    total += masks.back().numel();
  }
  masks[0][2] = 0.1;
  masks[1][0] = 0.2;   // at the threshold: pruned
  masks[1][5] = 0.25;  // above it: kept by threshold, the third lowest by fraction
  masks[3][7] = 0.0;
  AnpOptions options;
  const AnpPruned by_threshold = anp_prune(model, kSpec, layers, masks, options);
  EXPECT_EQ(by_threshold.count, 3);
  EXPECT_EQ(by_threshold.pruned[0], std::vector<int64_t>{2});
  EXPECT_EQ(by_threshold.pruned[1], std::vector<int64_t>{0});
  EXPECT_EQ(by_threshold.pruned[3], std::vector<int64_t>{7});
  auto original = model->named_parameters();
  auto pruned = by_threshold.model->named_parameters();
  EXPECT_EQ(pruned[layers[0] + ".weight"][2].item<float>(), 0.0f);
  EXPECT_EQ(pruned[layers[0] + ".bias"][2].item<float>(),
            original[layers[0] + ".bias"][2].item<float>());
  EXPECT_NE(original[layers[0] + ".weight"][2].item<float>(), 0.0f);
  EXPECT_EQ((pruned[layers[0] + ".weight"] == 0).sum().item<int64_t>(), 1);

  options.prune_by = AnpPruneBy::kFraction;
  options.fraction = 4.0 / static_cast<double>(total);
  const AnpPruned by_fraction = anp_prune(model, kSpec, layers, masks, options);
  EXPECT_EQ(by_fraction.count, 4);
  EXPECT_EQ(by_fraction.pruned[1], (std::vector<int64_t>{0, 5}));
  EXPECT_FLOAT_EQ(static_cast<float>(by_fraction.threshold), 0.25f);
}

TEST(Anp, AModelWithoutBatchNormIsRefused) {
  const models::ModelSpec spec{"mnist-cnn", 1, 4, 8, 8};
  EXPECT_THROW(AnpNeurons(models::create_model(spec)), UserError);
}

}  // namespace
}  // namespace nad::defenses
