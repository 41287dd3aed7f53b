#include "nad/defenses/mcr.h"

#include <chrono>
#include <limits>
#include <optional>

#include "nad/data/augment.h"
#include "nad/dist/process_group.h"
#include "nad/models/batch_norm.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"
#include "nad/util/progress.h"

namespace nad::defenses {

std::vector<torch::Tensor> parameter_state(const models::Classifier& model) {
  std::vector<torch::Tensor> state;
  for (const auto& p : model->parameters()) state.push_back(p.detach().clone());
  return state;
}

void set_curve_point(const models::Classifier& model, const CurveEnds& curve, double t) {
  torch::NoGradGuard no_grad;
  auto parameters = model->parameters();
  if (parameters.size() != curve.start.size() || parameters.size() != curve.bend.size() ||
      parameters.size() != curve.end.size()) {
    throw std::logic_error("set_curve_point: the model does not match the curve");
  }
  const double a = (1 - t) * (1 - t), b = 2 * t * (1 - t), c = t * t;
  for (size_t i = 0; i < parameters.size(); ++i) {
    // Written as a sum of the three terms so that t = 0 and t = 1 give an end bit for bit.
    parameters[i].copy_(curve.start[i] * a + curve.bend[i].detach() * b + curve.end[i] * c);
  }
}

void update_batchnorm(const models::Classifier& model, const torch::Tensor& images,
                      int64_t batch_size, torch::Device device) {
  torch::NoGradGuard no_grad;
  std::vector<std::pair<models::BatchNorm2dImpl*, c10::optional<double>>> norms;
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (auto* bn = dynamic_cast<models::BatchNorm2dImpl*>(module.get())) {
      norms.emplace_back(bn, bn->options.momentum());
      bn->reset_running_stats();
      bn->options.momentum(c10::nullopt);  // cumulative average over the batches
    }
  }
  if (norms.empty()) return;
  model->to(device);
  model->train();
  AutocastScope autocast(device);
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    model->forward(data::to_input(images.slice(0, start, start + batch_size).to(device)));
  }
  for (auto& [bn, momentum] : norms) bn->options.momentum(momentum);
  model->eval();
}

std::vector<train::EpochRecord> train_curve(const models::Classifier& start,
                                            const models::Classifier& end,
                                            const models::ModelSpec& spec, const CleanData& clean,
                                            const McrOptions& options, CurveEnds& curve) {
  const train::TrainOptions& t = options.train;
  if (t.epochs < 0) throw UserError(flag::curve_epochs + " must be >= 0");
  if (!(t.lr > 0)) throw UserError(flag::curve_lr + " must be positive");
  const torch::Device device = t.device;
  curve.start = parameter_state(start);
  curve.end = parameter_state(end);
  curve.bend.clear();
  for (size_t i = 0; i < curve.start.size(); ++i) {
    curve.bend.push_back(((curve.start[i] + curve.end[i]) / 2).to(device).requires_grad_(true));
    curve.start[i] = curve.start[i].to(device);
    curve.end[i] = curve.end[i].to(device);
  }
  models::Classifier working = models::clone_model(start, spec);
  working->to(device);
  auto working_parameters = working->parameters();

  torch::optim::SGD optimizer(curve.bend, torch::optim::SGDOptions(t.lr)
                                              .momentum(t.momentum)
                                              .nesterov(t.nesterov)
                                              .weight_decay(t.weight_decay));
  const torch::Tensor images = clean.train.images.to(device);
  const torch::Tensor labels = clean.train.labels.to(device);
  const int64_t n = clean.train.size();
  const int64_t steps = (n + t.batch_size - 1) / t.batch_size;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(t.seed);
  std::vector<train::EpochRecord> records;

  // Resumable as train_model is: the bend, SGD's momentum, the generator, the records.
  const bool stateful = t.state && !t.state_key.empty();
  std::optional<train::LoopState> resumed;
  if (stateful) resumed = t.state->load(t.state_key);
  int first_epoch = 0;
  if (resumed) {
    train::restore_loop_state(*resumed, curve.bend, optimizer, curve.bend, generator,
                              t.state->file(t.state_key).string());
    records = resumed->records;
    first_epoch = resumed->complete ? t.epochs : resumed->epoch;
  }
  auto save_state = [&](const train::LoopPosition& at) {
    if (!stateful) return;
    t.state->save(t.state_key, train::capture_loop_state(at, curve.bend, optimizer, curve.bend,
                                                         generator, records));
  };

  Progress progress(t.label, t.epochs, steps, t.quiet);
  for (int epoch = first_epoch; epoch < t.epochs; ++epoch) {
    const auto began = std::chrono::steady_clock::now();
    const double lr = train::lr_at(t, epoch);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
    }
    working->train();
    train::LoopPosition at = train::begin_epoch(resumed, epoch, n, generator, device);
    for (int64_t step = at.step; step < steps; ++step) {
      torch::Tensor rows = at.order.slice(0, step * t.batch_size, (step + 1) * t.batch_size);
      if (rows.size(0) < 2) continue;
      const double point = torch::rand({1}, generator, torch::kDouble).item<double>();
      set_curve_point(working, curve, point);
      // Data parallel as in train_model: the same global batch everywhere, one shard each.
      const train::LocalBatch local = train::local_batch(
          data::augment_batch(images.index_select(0, rows), t.augment, generator), labels, rows);
      const torch::Tensor& inputs = local.inputs;
      const torch::Tensor& targets = local.targets;
      torch::Tensor logits, loss;
      {
        AutocastScope autocast(inputs.device());
        logits = working->forward(inputs).logits.to(torch::kFloat);
        loss = torch::cross_entropy_loss(logits, targets);
        if (train::inject_nan_here(t.label, epoch, step))
          loss = loss * std::numeric_limits<float>::quiet_NaN();
      }
      const train::BatchTotals totals =
          train::batch_totals(local, loss.detach(), torch::Tensor(), logits.detach());
      train::check_finite(totals, t, epoch, step, lr);
      working->zero_grad();
      loss.backward();
      dist::average_gradients(working_parameters, local.share());
      optimizer.zero_grad();
      const double weight = 2 * point * (1 - point);
      for (size_t i = 0; i < curve.bend.size(); ++i) {
        const torch::Tensor& grad = working_parameters[i].grad();
        if (grad.defined()) curve.bend[i].mutable_grad() = grad * weight;
      }
      optimizer.step();
      at.add(totals.loss_sum, totals.correct, local.global_rows);
      progress.step(epoch, step + 1, at.mean_loss(), at.accuracy());
      if (train::stop_after_step(totals) && step + 1 < steps) {
        at.step = step + 1;
        save_state(at);
        train::throw_interrupted(t, epoch, at.step);
      }
    }
    train::EpochRecord record;
    record.phase = t.label;
    record.epoch = epoch + 1;
    record.lr = lr;
    record.loss = at.mean_loss();
    record.train_acc = at.accuracy();
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    progress.end_epoch(epoch, record.loss, record.train_acc, "");
    records.push_back(record);
    const bool last = epoch + 1 == t.epochs;
    save_state(train::epoch_end(epoch, last));
    if (!last && train::any_rank_stopping()) train::throw_interrupted(t, epoch + 1, 0);
  }
  for (auto& b : curve.bend) b = b.detach();
  return records;
}

models::Classifier curve_model(const models::Classifier& start, const models::Classifier& end,
                               const models::ModelSpec& spec, const CurveEnds& curve, double t,
                               const torch::Tensor& bn_images, torch::Device device) {
  // Buffers (BatchNorm statistics) start from the nearer end.
  models::Classifier model = models::clone_model(t < 0.5 ? start : end, spec);
  model->to(device);
  set_curve_point(model, curve, t);
  if (t != 0 && t != 1) update_batchnorm(model, bn_images, 500, device);
  model->eval();
  return model;
}

}  // namespace nad::defenses
