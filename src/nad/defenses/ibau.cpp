#include "nad/defenses/ibau.h"

#include <chrono>
#include <cmath>
#include <optional>

#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"
#include "nad/util/progress.h"

namespace nad::defenses {

void check_ibau_options(const IbauOptions& o) {
  if (o.rounds < 1) throw UserError(flag::ibau_rounds + " must be at least 1");
  if (o.fixed_point_steps < 1) throw UserError(flag::ibau_k + " must be at least 1");
  if (o.batch_size < 2) throw UserError(flag::batch_size + " must be at least 2");
  if (!(o.lr > 0)) throw UserError(flag::lr + " must be positive");
  if (!(o.inner_lr > 0)) throw UserError(flag::ibau_inner_lr + " must be positive");
  if (!(o.perturbation_lr > 0)) throw UserError(flag::ibau_perturbation_lr + " must be positive");
  if (!(o.perturbation_radius > 0)) throw UserError(flag::ibau_radius + " must be positive");
  if (!(o.portion >= 0 && o.portion <= 1))
    throw UserError(flag::ibau_portion + " must be in [0, 1]");
}

namespace {

std::vector<torch::Tensor> grads_or_zeros(const torch::Tensor& output,
                                          const std::vector<torch::Tensor>& inputs,
                                          const torch::Tensor& grad_output, bool retain) {
  std::vector<torch::Tensor> grads =
      torch::autograd::grad({output}, inputs,
                            grad_output.defined() ? std::vector<torch::Tensor>{grad_output}
                                                  : std::vector<torch::Tensor>{},
                            retain, /*create_graph=*/false, /*allow_unused=*/true);
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) grads[i] = torch::zeros_like(inputs[i]);
  }
  return grads;
}

// Adam as torch.optim.Adam computes it (no weight decay): kept by hand so that its moments can
// be saved with the run's state.
struct Adam {
  double lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t steps = 0;
  std::vector<torch::Tensor> exp_avg, exp_avg_sq;

  Adam(const std::vector<torch::Tensor>& parameters, double lr) : lr(lr) {
    for (const auto& p : parameters) {
      exp_avg.push_back(torch::zeros_like(p));
      exp_avg_sq.push_back(torch::zeros_like(p));
    }
  }
  void step(const std::vector<torch::Tensor>& parameters, const std::vector<torch::Tensor>& grads) {
    torch::NoGradGuard no_grad;
    ++steps;
    const double correction1 = 1 - std::pow(beta1, static_cast<double>(steps));
    const double correction2 = 1 - std::pow(beta2, static_cast<double>(steps));
    for (size_t i = 0; i < parameters.size(); ++i) {
      exp_avg[i].mul_(beta1).add_(grads[i], 1 - beta1);
      exp_avg_sq[i].mul_(beta2).addcmul_(grads[i], grads[i], 1 - beta2);
      const torch::Tensor denom = (exp_avg_sq[i].sqrt() / std::sqrt(correction2)).add_(eps);
      parameters[i].addcdiv_(exp_avg[i], denom, -lr / correction1);
    }
  }
};

}  // namespace

std::vector<torch::Tensor> implicit_hypergradient(
    const std::vector<torch::Tensor>& parameters, const torch::Tensor& perturbation,
    const std::function<torch::Tensor(const torch::Tensor&)>& outer_loss,
    const std::function<torch::Tensor(const torch::Tensor&)>& inner_loss, double inner_lr,
    int steps) {
  const torch::Tensor w = perturbation.detach().clone().set_requires_grad(true);
  std::vector<torch::Tensor> both{w};
  both.insert(both.end(), parameters.begin(), parameters.end());
  const std::vector<torch::Tensor> outer = grads_or_zeros(outer_loss(w), both, {}, false);
  const torch::Tensor& outer_w = outer[0];

  // The fixed-point map w' = w - inner_lr * d(inner)/dw, kept as a graph of w and the model.
  const torch::Tensor inner_grad =
      torch::autograd::grad({inner_loss(w)}, {w}, {}, /*retain_graph=*/true,
                            /*create_graph=*/true)[0];
  const torch::Tensor mapped = w - inner_lr * inner_grad;
  torch::Tensor v = torch::zeros_like(w);
  for (int k = 0; k < steps; ++k) {
    const torch::Tensor previous = v;
    v = grads_or_zeros(mapped, {w}, v, /*retain=*/true)[0] + outer_w;
    if ((v - previous).norm().item<double>() < 1e-10) break;
  }
  std::vector<torch::Tensor> grads = grads_or_zeros(mapped, parameters, v, /*retain=*/false);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = grads[i] + outer[i + 1];
  return grads;
}

IbauResult ibau_unlearn(const models::Classifier& model, const models::ModelSpec& spec,
                        const data::Dataset& clean, const IbauOptions& o,
                        const std::function<train::Metrics(const models::Classifier&)>& evaluate) {
  check_ibau_options(o);
  if (clean.size() < 2)
    throw UserError("I-BAU needs clean images; the clean subset has fewer than 2");
  const torch::Device device = o.device;
  IbauResult result;
  result.model = models::clone_model(model, spec);
  models::Classifier& working = result.model;
  working->to(device);
  working->eval();  // as the authors: BatchNorm statistics stay as they are
  std::vector<torch::Tensor> parameters;
  for (auto& p : working->parameters()) {
    p.set_requires_grad(true);
    parameters.push_back(p);
  }
  Adam adam(parameters, o.lr);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const torch::Tensor images = clean.images.to(device);
  const torch::Tensor labels = clean.labels.to(device);
  const int64_t n = images.size(0);
  const int64_t batches = (n + o.batch_size - 1) / o.batch_size;
  auto inputs_of = [&](const torch::Tensor& rows) {
    return to_memory_format(data::to_input(images.index_select(0, rows)));
  };
  // The unlearning batches: one shuffle, kept for every round (the authors' images_list).
  const torch::Tensor fixed_order = torch::randperm(n, generator, torch::kLong).to(device);
  auto batch_rows = [&](const torch::Tensor& order, int64_t b) {
    return order.slice(0, b * o.batch_size, std::min(n, (b + 1) * o.batch_size));
  };
  const torch::Tensor first_inputs = inputs_of(batch_rows(fixed_order, 0));
  const torch::Tensor first_labels = labels.index_select(0, batch_rows(fixed_order, 0));

  // Resumable by round: the model, Adam's moments and step count, the generator, the records.
  std::vector<torch::Tensor> trained = parameters;
  for (const auto& b : working->buffers()) trained.push_back(b);
  trained.insert(trained.end(), adam.exp_avg.begin(), adam.exp_avg.end());
  trained.insert(trained.end(), adam.exp_avg_sq.begin(), adam.exp_avg_sq.end());
  torch::optim::SGD no_sgd(std::vector<torch::Tensor>{torch::zeros({1})},
                           torch::optim::SGDOptions(0));
  const bool stateful = o.state && !o.state_key.empty();
  int first_round = 0;
  if (stateful) {
    if (std::optional<train::LoopState> resumed = o.state->load(o.state_key)) {
      {
        torch::NoGradGuard no_grad;
        train::restore_loop_state(*resumed, trained, no_sgd, {}, generator,
                                  o.state->file(o.state_key).string());
      }
      result.records = resumed->records;
      first_round = resumed->complete ? o.rounds : resumed->epoch;
      if (resumed->extra.is_object()) {
        adam.steps = resumed->extra.value("adam_steps", int64_t{0});
        result.perturbation_norms =
            resumed->extra.value("perturbation_norms", std::vector<double>{});
      }
    }
  }
  train::TrainOptions stop_options;
  stop_options.label = "ibau";
  stop_options.state = o.state;
  stop_options.state_key = o.state_key;

  Progress progress("i-bau", o.rounds, 2 * batches, o.quiet);
  for (int round = first_round; round < o.rounds; ++round) {
    const auto began = std::chrono::steady_clock::now();
    // The inner player: a universal perturbation that changes the model's own predictions.
    torch::Tensor perturbation =
        torch::zeros({1, images.size(3), images.size(1), images.size(2)},
                     torch::TensorOptions().device(device).dtype(torch::kFloat));
    const torch::Tensor order = torch::randperm(n, generator, torch::kLong).to(device);
    double loss_sum = 0;
    for (int64_t b = 0; b < batches; ++b) {
      const torch::Tensor inputs = inputs_of(batch_rows(order, b));
      torch::Tensor own;
      {
        torch::NoGradGuard no_grad;
        own = working->forward(inputs).logits.argmax(1);
      }
      const torch::Tensor p = perturbation.detach().set_requires_grad(true);
      const torch::Tensor loss =
          -torch::cross_entropy_loss(working->forward(inputs + p).logits, own) +
          o.perturbation_decay * p.pow(2).sum();
      const torch::Tensor grad = torch::autograd::grad({loss}, {p})[0];
      perturbation = (p - o.perturbation_lr * grad).detach();
      progress.step(round, b + 1, -loss.item<double>(), 0);
    }
    const double norm = perturbation.norm().item<double>();
    perturbation = perturbation * std::min(1.0, o.perturbation_radius / std::max(norm, 1e-12));
    result.perturbation_norms.push_back(perturbation.norm().item<double>());

    // The outer player: the model learns to be right despite it, through the hypergradient.
    const auto inner_loss = [&](const torch::Tensor& w) {
      return -torch::cross_entropy_loss(working->forward(first_inputs + w).logits, first_labels) +
             o.perturbation_decay * w.pow(2).sum();
    };
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < batches; ++b) {
      const torch::Tensor rows = batch_rows(fixed_order, b);
      const torch::Tensor inputs = inputs_of(rows);
      const torch::Tensor targets = labels.index_select(0, rows);
      const int64_t patched = static_cast<int64_t>(o.portion * static_cast<double>(rows.size(0)));
      torch::Tensor carrier = torch::zeros({rows.size(0), 1, 1, 1}, inputs.options());
      if (patched > 0) {
        carrier.index_fill_(
            0,
            torch::randperm(rows.size(0), generator, torch::kLong).slice(0, 0, patched).to(device),
            1);
      }
      torch::Tensor logits;
      const auto outer_loss = [&](const torch::Tensor& w) {
        logits = working->forward(inputs + carrier * w).logits;
        return torch::cross_entropy_loss(logits, targets);
      };
      const std::vector<torch::Tensor> grads = implicit_hypergradient(
          parameters, perturbation, outer_loss, inner_loss, o.inner_lr, o.fixed_point_steps);
      bool finite = true;
      for (const auto& g : grads) finite = finite && torch::isfinite(g).all().item<bool>();
      if (!finite) {
        throw train::DivergedError("i-bau: the hypergradient is not finite in round " +
                                   std::to_string(round + 1) + ", batch " + std::to_string(b + 1) +
                                   "; try a smaller " + flag::lr);
      }
      adam.step(parameters, grads);
      const torch::Tensor loss = torch::cross_entropy_loss(logits.detach(), targets);
      loss_sum += loss.item<double>() * rows.size(0);
      correct += logits.detach().argmax(1).eq(targets).sum().item<int64_t>();
      seen += rows.size(0);
      progress.step(round, batches + b + 1, loss_sum / seen, 100.0 * correct / seen);
    }
    train::EpochRecord record;
    record.phase = "i-bau";
    record.epoch = round + 1;
    record.lr = o.lr;
    record.loss = loss_sum / std::max<int64_t>(seen, 1);
    record.train_acc = 100.0 * correct / std::max<int64_t>(seen, 1);
    std::string summary;
    if (evaluate) {
      record.metrics = evaluate(working);
      summary = record.metrics.summary();
    }
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    progress.end_epoch(round, record.loss, record.train_acc, summary);
    result.records.push_back(record);
    const bool last = round + 1 == o.rounds;
    if (stateful) {
      train::LoopState state = train::capture_loop_state(train::epoch_end(round, last), trained,
                                                         no_sgd, {}, generator, result.records);
      state.extra = {{"adam_steps", adam.steps}, {"perturbation_norms", result.perturbation_norms}};
      o.state->save(o.state_key, state);
    }
    if (!last && stop_requested()) train::throw_interrupted(stop_options, round + 1, 0);
  }
  for (auto& p : working->parameters()) p.set_requires_grad(false);
  return result;
}

}  // namespace nad::defenses
