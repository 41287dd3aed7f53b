#include "nad/defenses/anp.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>

#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"
#include "nad/util/progress.h"

namespace nad::defenses {

void check_anp_options(const AnpOptions& o) {
  if (!(o.eps >= 0)) throw UserError(flag::anp_eps + " must be >= 0");
  if (o.steps < 1) throw UserError(flag::anp_steps + " must be at least 1");
  if (!(o.alpha >= 0 && o.alpha <= 1)) throw UserError(flag::anp_alpha + " must be in [0, 1]");
  if (o.iterations < 1) throw UserError(flag::anp_iterations + " must be at least 1");
  if (o.rounds < 1) throw UserError(flag::anp_rounds + " must be at least 1");
  if (o.batch_size < 2) throw UserError(flag::batch_size + " must be at least 2");
  if (!(o.mask_lr > 0)) throw UserError(flag::anp_mask_lr + " must be positive");
  if (!(o.threshold >= 0 && o.threshold <= 1))
    throw UserError(flag::anp_threshold + " must be in [0, 1]");
  if (!(o.fraction >= 0 && o.fraction <= 1)) {
    throw UserError(flag::anp_prune_fraction + " must be in [0, 1]");
  }
}

AnpPruneBy parse_anp_prune_by(const std::string& name) {
  if (name == "threshold") return AnpPruneBy::kThreshold;
  if (name == "fraction") return AnpPruneBy::kFraction;
  throw UserError(flag::anp_prune_by + " must be threshold or fraction, not '" + name + "'");
}

std::string anp_prune_by_name(AnpPruneBy by) {
  return by == AnpPruneBy::kThreshold ? "threshold" : "fraction";
}

AnpNeurons::AnpNeurons(const models::Classifier& model) {
  const auto parameters = model->named_parameters();
  for (const auto& layer : models::weighted_layers(model)) {
    if (layer.kind != models::LayerKind::kBatchNorm) continue;
    if (parameters.find(layer.path + ".bias") == nullptr) continue;  // not affine
    auto affine = std::make_unique<models::BatchNormAffineOverride>(model, layer.path);
    const torch::Tensor& weight = affine->weight();
    auto options = weight.options().dtype(torch::kFloat).requires_grad(false);
    layers_.push_back(layer.path);
    weights_.push_back(weight.detach().clone());
    biases_.push_back(affine->bias().detach().clone());
    masks_.push_back(torch::ones(weight.sizes(), options).set_requires_grad(true));
    weight_noise_.push_back(torch::zeros(weight.sizes(), options));
    bias_noise_.push_back(torch::zeros(weight.sizes(), options));
    overrides_.push_back(std::move(affine));
  }
  if (layers_.empty()) {
    throw UserError("ANP masks BatchNorm neurons; this model has no BatchNorm layer with weights");
  }
}

int64_t AnpNeurons::count() const {
  int64_t n = 0;
  for (const auto& mask : masks_) n += mask.numel();
  return n;
}

void AnpNeurons::randomise_perturbation(double eps, at::Generator& generator) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < layers_.size(); ++i) {
    // Drawn on the CPU from the run's generator, so runs repeat on any device.
    for (torch::Tensor* noise : {&weight_noise_[i], &bias_noise_[i]}) {
      torch::Tensor values = torch::empty(noise->sizes(), torch::kFloat);
      if (eps > 0) {
        values.uniform_(-eps, eps, generator);
      } else {
        values.zero_();
      }
      *noise = values.to(noise->device());
    }
  }
}

void AnpNeurons::apply(bool perturbed, bool track_perturbation) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto& affine = *overrides_[i];
    const torch::Tensor& weight = weights_[i];
    const torch::Tensor& bias = biases_[i];
    if (!perturbed) {
      affine.set(weight * masks_[i].to(weight.dtype()), bias);
      continue;
    }
    weight_noise_[i] = weight_noise_[i].detach().set_requires_grad(track_perturbation);
    bias_noise_[i] = bias_noise_[i].detach().set_requires_grad(track_perturbation);
    affine.set(weight * (masks_[i] + weight_noise_[i]).to(weight.dtype()),
               bias * (1 + bias_noise_[i]).to(bias.dtype()));
  }
}

void AnpNeurons::apply_for_evaluation() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < layers_.size(); ++i) {
    overrides_[i]->set(weights_[i] * masks_[i].to(weights_[i].dtype()), biases_[i]);
  }
}

void AnpNeurons::ascend_perturbation(const torch::Tensor& loss, double step) {
  std::vector<torch::Tensor> noise;
  for (size_t i = 0; i < layers_.size(); ++i) {
    noise.push_back(weight_noise_[i]);
    noise.push_back(bias_noise_[i]);
  }
  const auto grads = torch::autograd::grad({loss}, noise, {}, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < layers_.size(); ++i) {
    // The authors' signed gradient step on -loss (SGD at eps / steps), without a clip.
    if (grads[2 * i].defined()) weight_noise_[i] = weight_noise_[i] + step * grads[2 * i].sign();
    if (grads[2 * i + 1].defined())
      bias_noise_[i] = bias_noise_[i] + step * grads[2 * i + 1].sign();
    weight_noise_[i] = weight_noise_[i].detach();
    bias_noise_[i] = bias_noise_[i].detach();
  }
}

void AnpNeurons::clamp_masks() {
  torch::NoGradGuard no_grad;
  for (auto& mask : masks_) mask.clamp_(0, 1);
}

namespace {

torch::Tensor cross_entropy_of(const models::Classifier& model, const torch::Tensor& inputs,
                               const torch::Tensor& targets, torch::Tensor* logits_out = nullptr) {
  AutocastScope autocast(inputs.device());
  torch::Tensor logits = model->forward(inputs).logits.to(torch::kFloat);
  if (logits_out) *logits_out = logits.detach();
  return torch::cross_entropy_loss(logits, targets);
}

}  // namespace

AnpStep anp_step(const models::Classifier& model, AnpNeurons& neurons, torch::optim::SGD& optimizer,
                 const torch::Tensor& inputs, const torch::Tensor& targets,
                 const AnpOptions& options, at::Generator& generator) {
  torch::Tensor robust_loss;
  if (options.eps > 0) {
    neurons.randomise_perturbation(options.eps, generator);
    for (int s = 0; s < options.steps; ++s) {
      neurons.apply(/*perturbed=*/true, /*track_perturbation=*/true);
      neurons.ascend_perturbation(cross_entropy_of(model, inputs, targets),
                                  options.eps / options.steps);
    }
    neurons.apply(/*perturbed=*/true);
    robust_loss = cross_entropy_of(model, inputs, targets);
  }
  neurons.apply(/*perturbed=*/false);
  AnpStep out;
  const torch::Tensor natural_loss = cross_entropy_of(model, inputs, targets, &out.logits);
  // With eps 0 the authors' robust term is the constant 0, so only alpha * natural remains.
  const torch::Tensor loss = robust_loss.defined()
                                 ? options.alpha * natural_loss + (1 - options.alpha) * robust_loss
                                 : options.alpha * natural_loss;
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  neurons.clamp_masks();
  out.loss = loss.item<double>();
  return out;
}

AnpMaskResult learn_anp_masks(
    const models::Classifier& model, const models::ModelSpec& spec, const data::Dataset& clean,
    const AnpOptions& o, const std::function<train::Metrics(const models::Classifier&)>& evaluate) {
  check_anp_options(o);
  if (clean.size() < 1) throw UserError("ANP needs clean images; the clean subset is empty");
  const int rounds =
      static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(o.rounds, o.iterations)));
  const torch::Device device = o.device;

  models::Classifier working = models::clone_model(model, spec);
  working->to(device);
  for (auto& p : working->parameters()) p.set_requires_grad(false);
  working->train();
  AnpNeurons neurons(working);
  torch::optim::SGD optimizer(neurons.masks(),
                              torch::optim::SGDOptions(o.mask_lr).momentum(o.momentum));
  const torch::Tensor images = clean.images.to(device);
  const torch::Tensor labels = clean.labels.to(device);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);

  // What a resumed run needs to continue exactly: the masks, the working copy's BatchNorm
  // statistics (training mode moves them), SGD's momentum, the generator, the records.
  std::vector<torch::Tensor> trained = neurons.masks();
  for (const auto& b : working->buffers()) trained.push_back(b);
  std::vector<train::EpochRecord> records;
  const bool stateful = o.state && !o.state_key.empty();
  std::optional<train::LoopState> resumed;
  if (stateful) resumed = o.state->load(o.state_key);
  int first_round = 0;
  int64_t first_step = 0;
  double resumed_loss = 0;
  int64_t resumed_correct = 0, resumed_seen = 0;
  if (resumed) {
    train::restore_loop_state(*resumed, trained, optimizer, neurons.masks(), generator,
                              o.state->file(o.state_key).string());
    records = resumed->records;
    first_round = resumed->complete ? rounds : resumed->epoch;
    first_step = resumed->step;
    resumed_loss = resumed->loss_sum;
    resumed_correct = resumed->correct;
    resumed_seen = resumed->seen;
  }
  train::TrainOptions stop_options;  // names the loop and its state in an interrupt message
  stop_options.label = "anp";
  stop_options.state = o.state;
  stop_options.state_key = o.state_key;
  auto save_state = [&](const train::LoopPosition& at) {
    if (!stateful) return;
    o.state->save(o.state_key, train::capture_loop_state(at, trained, optimizer, neurons.masks(),
                                                         generator, records));
  };

  const int64_t per_round = (o.iterations + rounds - 1) / rounds;
  Progress progress("anp", rounds, per_round, o.quiet);
  for (int round = first_round; round < rounds; ++round) {
    const auto began = std::chrono::steady_clock::now();
    const int64_t steps = std::min(per_round, o.iterations - round * per_round);
    train::LoopPosition at;
    at.epoch = round;
    if (resumed && round == first_round) {
      at.step = first_step;
      at.loss_sum = resumed_loss;
      at.correct = resumed_correct;
      at.seen = resumed_seen;
    }
    working->train();
    for (int64_t step = at.step; step < steps; ++step) {
      // Drawn with replacement, as the authors' RandomSampler.
      const torch::Tensor rows =
          torch::randint(images.size(0), {o.batch_size}, generator, torch::kLong).to(device);
      const torch::Tensor inputs = to_memory_format(
          data::to_input(data::augment_batch(images.index_select(0, rows), o.augment, generator)));
      const torch::Tensor targets = labels.index_select(0, rows);
      const AnpStep result = anp_step(working, neurons, optimizer, inputs, targets, o, generator);
      if (!std::isfinite(result.loss)) {
        throw train::DivergedError(
            "anp: the loss is not finite at round " + std::to_string(round + 1) + ", step " +
            std::to_string(step + 1) + "; try a smaller " + flag::anp_mask_lr);
      }
      const int64_t correct = result.logits.argmax(1).eq(targets).sum().item<int64_t>();
      at.add(result.loss * o.batch_size, correct, o.batch_size);
      progress.step(round, step + 1, at.mean_loss(), at.accuracy());
      if (stop_requested() && step + 1 < steps) {
        at.step = step + 1;
        save_state(at);
        train::throw_interrupted(stop_options, round, at.step);
      }
    }
    train::EpochRecord record;
    record.phase = "anp";
    record.epoch = round + 1;
    record.lr = o.mask_lr;
    record.loss = at.mean_loss();
    record.train_acc = at.accuracy();
    std::string summary;
    if (evaluate) {
      neurons.apply_for_evaluation();
      working->eval();
      record.metrics = evaluate(working);
      summary = record.metrics.summary();
      working->train();
    }
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    progress.end_epoch(round, record.loss, record.train_acc, summary);
    records.push_back(record);
    const bool last = round + 1 == rounds;
    save_state(train::epoch_end(round, last));
    if (!last && stop_requested()) train::throw_interrupted(stop_options, round + 1, 0);
  }

  AnpMaskResult result;
  result.layers = neurons.layers();
  for (const auto& mask : neurons.masks()) result.masks.push_back(mask.detach().cpu().clone());
  result.records = records;
  return result;
}

AnpPruned anp_prune(const models::Classifier& model, const models::ModelSpec& spec,
                    const std::vector<std::string>& layers, const std::vector<torch::Tensor>& masks,
                    const AnpOptions& options) {
  if (layers.size() != masks.size()) throw std::logic_error("anp_prune: layers and masks differ");
  check_anp_options(options);
  AnpPruned out;
  out.model = models::clone_model(model, spec);
  out.pruned.resize(layers.size());
  struct Neuron {
    float value;
    size_t layer;
    int64_t channel;
  };
  std::vector<Neuron> neurons;
  for (size_t i = 0; i < masks.size(); ++i) {
    const torch::Tensor m = masks[i].to(torch::kCPU, torch::kFloat).contiguous();
    for (int64_t c = 0; c < m.numel(); ++c) neurons.push_back({m.data_ptr<float>()[c], i, c});
  }
  // Lowest masks first; ties in layer order, so that a fraction prunes exactly its share.
  std::stable_sort(neurons.begin(), neurons.end(),
                   [](const Neuron& a, const Neuron& b) { return a.value < b.value; });
  size_t chosen = 0;
  if (options.prune_by == AnpPruneBy::kFraction) {
    // Rounded down, with room for the fraction's own rounding (4 / n * n may be 3.999...).
    chosen = static_cast<size_t>(
        std::floor(options.fraction * static_cast<double>(neurons.size()) + 1e-9));
    out.threshold = chosen > 0 ? neurons[chosen - 1].value : 0;
  } else {
    // In the masks' own precision: a mask written as 0.2 is at the threshold 0.2.
    const auto threshold = static_cast<float>(options.threshold);
    while (chosen < neurons.size() && neurons[chosen].value <= threshold) ++chosen;
    out.threshold = options.threshold;
  }
  for (size_t n = 0; n < chosen; ++n) out.pruned[neurons[n].layer].push_back(neurons[n].channel);
  torch::NoGradGuard no_grad;
  auto parameters = out.model->named_parameters();
  for (size_t i = 0; i < layers.size(); ++i) {
    auto& channels = out.pruned[i];
    if (channels.empty()) continue;
    std::sort(channels.begin(), channels.end());
    torch::Tensor* weight = parameters.find(layers[i] + ".weight");
    if (weight == nullptr) throw std::logic_error("anp_prune: no " + layers[i] + ".weight");
    weight->index_fill_(0, torch::tensor(channels).to(weight->device()), 0);
    out.count += static_cast<int64_t>(channels.size());
  }
  return out;
}

}  // namespace nad::defenses
