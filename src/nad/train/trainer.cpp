#include "nad/train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "nad/dist/process_group.h"
#include "nad/train/cuda_graph.h"
#include "nad/train/sgd.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/progress.h"

namespace nad::train {

Schedule parse_schedule(const std::string& text) {
  if (text == "constant") return Schedule::kConstant;
  if (text == "step") return Schedule::kStep;
  if (text == "cosine") return Schedule::kCosine;
  if (text == "reference") return Schedule::kReference;
  throw UserError("--schedule must be constant, step, cosine or reference, not '" + text + "'");
}

std::string schedule_name(Schedule schedule) {
  switch (schedule) {
    case Schedule::kConstant:
      return "constant";
    case Schedule::kStep:
      return "step";
    case Schedule::kCosine:
      return "cosine";
    case Schedule::kReference:
      return "reference";
  }
  return "?";
}

nlohmann::json TrainOptions::to_json() const {
  return {{"epochs", epochs},
          {"batch_size", batch_size},
          {"lr", lr},
          {"momentum", momentum},
          {"weight_decay", weight_decay},
          {"nesterov", nesterov},
          {"schedule", schedule_name(schedule)},
          {"milestones", milestones},
          {"gamma", gamma},
          {"augment",
           {{"crop_padding", augment.crop_padding},
            {"horizontal_flip", augment.horizontal_flip},
            {"cutout_holes", augment.cutout_holes},
            {"cutout_length", augment.cutout_length},
            {"cutout_fill", data::cutout_fill_name(augment.cutout_fill)}}},
          {"seed", seed},
          {"device", device.str()}};
}

double lr_at(const TrainOptions& options, int epoch) {
  switch (options.schedule) {
    case Schedule::kConstant:
      return options.lr;
    case Schedule::kStep: {
      double lr = options.lr;
      for (int m : options.milestones) {
        if (epoch >= m) lr *= options.gamma;
      }
      return lr;
    }
    case Schedule::kCosine:
      return 0.5 * options.lr * (1 + std::cos(M_PI * epoch / std::max(1, options.epochs)));
    case Schedule::kReference:
      return epoch < 2 ? options.lr : options.lr * 0.1;
  }
  return options.lr;
}

void check_loop_options(int epochs, int64_t batch_size, std::optional<double> lr) {
  if (epochs < 0) throw UserError("--epochs must be >= 0");
  if (batch_size < 2) throw UserError("--batch-size must be at least 2");
  if (lr && !(*lr > 0)) throw UserError("--lr must be positive");
}

LocalBatch local_batch(const torch::Tensor& augmented, const torch::Tensor& labels,
                       const torch::Tensor& rows) {
  LocalBatch batch;
  batch.global_rows = rows.size(0);
  const auto [begin, end] = dist::local_shard(batch.global_rows);
  batch.local_rows = end - begin;
  batch.inputs = data::to_input(augmented.slice(0, begin, end));
  batch.targets = labels.index_select(0, rows.slice(0, begin, end));
  return batch;
}

torch::Tensor step_values(const torch::Tensor& cross_entropy, const torch::Tensor& extra,
                          const torch::Tensor& logits, const torch::Tensor& targets) {
  const torch::Tensor extra_or_zero =
      extra.defined() ? extra.to(torch::kDouble)
                      : torch::zeros({}, cross_entropy.options().dtype(torch::kDouble));
  return torch::stack({cross_entropy.to(torch::kDouble), extra_or_zero,
                       logits.argmax(1).eq(targets).sum().to(torch::kDouble)});
}

BatchTotals totals_from_values(const double* v, int64_t global_rows, int64_t local_rows,
                               bool has_extra) {
  const double rows = static_cast<double>(local_rows);
  const std::vector<double> sums =
      dist::all_reduce_sum({v[0] * rows, v[1] * rows, v[2], stop_requested() ? 1.0 : 0.0});
  BatchTotals totals;
  totals.loss_sum = sums[0] + sums[1];
  totals.correct = static_cast<int64_t>(sums[2]);
  totals.mean_loss = totals.loss_sum / global_rows;
  totals.mean_cross_entropy = sums[0] / global_rows;
  totals.mean_extra = sums[1] / global_rows;
  totals.stop = sums[3] > 0;
  totals.has_extra = has_extra;
  return totals;
}

BatchTotals batch_totals(const LocalBatch& batch, const torch::Tensor& cross_entropy,
                         const torch::Tensor& extra, const torch::Tensor& logits) {
  // One copy to the host (on a GPU, one wait per step instead of three).
  const torch::Tensor values = step_values(cross_entropy, extra, logits, batch.targets).cpu();
  return totals_from_values(values.data_ptr<double>(), batch.global_rows, batch.local_rows,
                            extra.defined());
}

bool stop_after_step(const BatchTotals& totals) {
  return dist::is_distributed() ? totals.stop : stop_requested();
}

bool any_rank_stopping() { return dist::all_reduce_sum({stop_requested() ? 1.0 : 0.0})[0] > 0; }

LoopPosition begin_epoch(const std::optional<LoopState>& resumed, int epoch, int64_t rows,
                         at::Generator& generator, torch::Device device) {
  LoopPosition at;
  at.epoch = epoch;
  if (resumed && resumed->epoch == epoch && resumed->step > 0) {
    // Stopped mid-epoch: the same permutation, and the generator already past its steps.
    at.step = resumed->step;
    at.order = resumed->order.to(device);
    at.loss_sum = resumed->loss_sum;
    at.correct = resumed->correct;
    at.seen = resumed->seen;
  } else {
    at.order = torch::randperm(rows, generator, torch::kLong).to(device);
  }
  return at;
}

LoopPosition epoch_end(int epoch, bool complete) {
  LoopPosition at;
  at.epoch = epoch + 1;
  at.complete = complete;
  return at;
}

namespace {

std::string where_state_is(const TrainOptions& options, int good_epochs) {
  if (!options.state) return "";
  return "; the last good state (" + std::to_string(good_epochs) + " epoch" +
         (good_epochs == 1 ? "" : "s") + " done) is kept in " + options.state->dir().string();
}

}  // namespace

void check_finite(const BatchTotals& totals, const TrainOptions& options, int epoch, int64_t step,
                  double lr, const char* extra_name) {
  if (std::isfinite(totals.mean_loss)) return;
  char terms[160];
  if (totals.has_extra) {
    std::snprintf(terms, sizeof terms, "cross-entropy %g, %s %g, lr %g", totals.mean_cross_entropy,
                  extra_name, totals.mean_extra, lr);
  } else {
    std::snprintf(terms, sizeof terms, "cross-entropy %g, lr %g", totals.mean_cross_entropy, lr);
  }
  throw DivergedError(options.label + ": the loss is not finite at epoch " +
                      std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) + " (" +
                      terms + ")" + where_state_is(options, epoch) + "; lower " +
                      options.lr_option);
}

bool inject_nan_here(const std::string& label, int epoch, int64_t step) {
  const char* value = std::getenv("NAD_TEST_NAN_AT");
  if (value == nullptr || *value == '\0') return false;
  const std::string spec = value;
  return spec == label + ":" + std::to_string(epoch + 1) + ":" + std::to_string(step + 1);
}

void throw_interrupted(const TrainOptions& options, int epoch, int64_t step) {
  const int signal_number = stop_signal() ? stop_signal() : SIGTERM;
  std::string where =
      options.label + " stopped by " + signal_name(signal_number) +
      (step > 0 ? " in epoch " + std::to_string(epoch + 1) + " after step " + std::to_string(step)
                : " after epoch " + std::to_string(epoch));
  if (options.state) where += "; its state is saved in " + options.state->dir().string();
  throw Interrupted(where, signal_number);
}

namespace {

// A step whose numbers (step_values) are still on the device.
struct PendingStep {
  int64_t step = 0;
  int64_t global_rows = 0;
  int64_t local_rows = 0;
  torch::Tensor values;
};

// Steps before a loop captures its step as a CUDA graph: LibTorch initialises its libraries'
// state lazily, and SGD creates its momentum buffers, in the first steps.
constexpr int64_t kEagerStepsBeforeCapture = 2;

}  // namespace

std::vector<EpochRecord> train_model(const models::Classifier& model, const data::Dataset& data,
                                     const TrainOptions& options, const EpochEvaluation& evaluate,
                                     const ExtraLoss& extra_loss) {
  check_loop_options(options.epochs, options.batch_size, options.lr);
  const torch::Device device = options.device;
  model->to(device);
  // Graphs need a stream other than the default one; the whole loop runs on it.
  const OwnCudaStream stream(device);
  const torch::Tensor images = data.images.to(device);
  const torch::Tensor labels = data.labels.to(device);
  const int64_t n = data.size();
  const int64_t steps = (n + options.batch_size - 1) / options.batch_size;
  const bool distributed = dist::is_distributed();
  const int64_t check_every =
      options.check_every > 0 ? options.check_every : (device.is_cuda() && !distributed ? 50 : 1);
  bool use_graphs =
      device.is_cuda() && !distributed && compute_options().cuda_graphs && cuda_graphs_supported();

  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(options.lr)
                                                       .momentum(options.momentum)
                                                       .nesterov(options.nesterov)
                                                       .weight_decay(options.weight_decay));
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  std::vector<EpochRecord> records;
  // Data parallel: every rank starts from rank 0's weights and draws the same permutation and
  // augmentation (same seed), then trains on its own rows of each global batch.
  dist::broadcast_module(*model);
  const std::vector<torch::Tensor> parameters = model->parameters();
  std::vector<torch::Tensor> trained = parameters;
  for (const auto& b : model->buffers()) trained.push_back(b);

  // Where an earlier process left this loop (every rank reads the same file).
  const bool stateful = options.state && !options.state_key.empty();
  std::optional<LoopState> resumed;
  if (stateful) resumed = options.state->load(options.state_key);
  int first_epoch = 0;
  if (resumed) {
    restore_loop_state(*resumed, trained, optimizer, parameters, generator,
                       options.state->file(options.state_key).string());
    records = resumed->records;
    if (options.load_extra) options.load_extra(*resumed);
    if (resumed->complete) return records;
    first_epoch = resumed->epoch;
  }
  auto save_state = [&](const LoopPosition& at) {
    if (!stateful) return;
    LoopState state = capture_loop_state(at, trained, optimizer, parameters, generator, records);
    if (options.save_extra) options.save_extra(state);
    options.state->save(options.state_key, state);
  };

  // One optimisation step; returns its step_values. `before_update` sees them before the
  // weights change (eager steps only: a captured step cannot stop in the middle).
  auto run_step = [&](const torch::Tensor& inputs, const torch::Tensor& targets, double share,
                      bool inject_nan,
                      const std::function<void(const torch::Tensor&)>& before_update) {
    models::ModelOutput output;
    torch::Tensor cross_entropy, extra, loss;
    {
      AutocastScope autocast(device);
      output = model->forward(inputs);
      cross_entropy = torch::cross_entropy_loss(output.logits.to(torch::kFloat), targets);
      if (inject_nan) cross_entropy = cross_entropy * std::numeric_limits<float>::quiet_NaN();
      loss = cross_entropy;
      if (extra_loss) {
        extra = extra_loss(inputs, output);
        loss = loss + extra;
      }
    }
    const torch::Tensor values =
        step_values(cross_entropy.detach(), extra.defined() ? extra.detach() : extra,
                    output.logits.detach(), targets);
    if (before_update) before_update(values);
    clear_gradients(parameters);
    loss.backward();
    dist::average_gradients(parameters, share);
    sgd_step(optimizer);
    return values;
  };

  // The captured step (CUDA): its inputs stay in place; it is captured again when the learning
  // rate changes (the rate is part of the recorded kernels).
  CapturedWork graph;
  double graph_lr = 0;
  torch::Tensor static_inputs, static_targets;
  int64_t eager_steps = 0;

  Progress progress(options.label, options.epochs, steps, options.quiet);
  // Debug hook: NAD_STEP_TIMING=1 times each step's batch preparation and its optimisation step,
  // waiting for the device around each (so the run is slower), and prints the means per epoch.
  const bool step_timing = std::getenv("NAD_STEP_TIMING") != nullptr;
  auto timing_point = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
    return std::chrono::steady_clock::now();
  };
  std::vector<PendingStep> pending;
  bool stop_seen = false;  // a stop request among the steps settled last
  // Reads the pending steps' numbers (one wait for all of them), checks them in order and counts
  // them; a non-finite loss is reported at its own step.
  auto settle = [&](LoopPosition& at, int epoch, double lr) {
    stop_seen = false;
    if (pending.empty()) return;
    std::vector<torch::Tensor> values;
    for (const auto& p : pending) values.push_back(p.values);
    const torch::Tensor host = torch::stack(values).to(torch::kCPU, torch::kDouble).contiguous();
    const double* v = host.data_ptr<double>();
    const std::vector<PendingStep> steps_read = std::move(pending);
    pending.clear();
    for (size_t i = 0; i < steps_read.size(); ++i) {
      const PendingStep& p = steps_read[i];
      const BatchTotals totals =
          totals_from_values(v + 3 * i, p.global_rows, p.local_rows, static_cast<bool>(extra_loss));
      check_finite(totals, options, epoch, p.step, lr);
      at.add(totals.loss_sum, totals.correct, p.global_rows);
      progress.step(epoch, p.step + 1, at.mean_loss(), at.accuracy());
      stop_seen = stop_seen || stop_after_step(totals);
    }
  };

  for (int epoch = first_epoch; epoch < options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    const double lr = lr_at(options, epoch);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
    }
    model->train();
    LoopPosition at = begin_epoch(resumed, epoch, n, generator, device);
    double batch_seconds = 0, step_seconds = 0;
    int64_t timed_steps = 0;
    const int64_t replays_before = CapturedWork::total_replays();
    for (int64_t step = at.step; step < steps; ++step) {
      const auto batch_start = step_timing ? timing_point() : std::chrono::steady_clock::now();
      torch::Tensor rows =
          at.order.slice(0, step * options.batch_size, (step + 1) * options.batch_size);
      // BatchNorm cannot train on a single sample; a lone leftover row waits for next epoch.
      if (rows.size(0) < 2) continue;
      torch::Tensor batch =
          data::augment_batch(images.index_select(0, rows), options.augment, generator);
      const LocalBatch local = local_batch(batch, labels, rows);
      const bool inject_nan = inject_nan_here(options.label, epoch, step);
      PendingStep pending_step{step, local.global_rows, local.local_rows, {}};
      const auto step_start = step_timing ? timing_point() : batch_start;
      bool replayed = false;  // this step ran as the captured graph

      if (use_graphs && !inject_nan && eager_steps >= kEagerStepsBeforeCapture &&
          local.global_rows == options.batch_size) {
        if (!graph.captured() || graph_lr != lr) {
          if (!static_inputs.defined()) {
            static_inputs = torch::empty_like(local.inputs);
            static_targets = torch::empty_like(local.targets);
          }
          try {
            clear_gradients(parameters);  // backward in the graph makes them, in its memory
            graph.capture([&] { return run_step(static_inputs, static_targets, 1.0, false, {}); });
            graph_lr = lr;
          } catch (const std::exception& e) {
            use_graphs = false;
            clear_gradients(parameters);
            std::fprintf(stderr,
                         "nad: warning: %s: CUDA graph capture failed, going on without (%s)\n",
                         options.label.c_str(), e.what());
          }
        }
        if (use_graphs) {
          static_inputs.copy_(local.inputs);
          static_targets.copy_(local.targets);
          pending_step.values = graph.replay().clone();
          pending.push_back(pending_step);
          replayed = true;
        }
      }
      if (!replayed) {
        run_step(local.inputs, local.targets, local.share(), inject_nan,
                 [&](const torch::Tensor& values) {
                   pending_step.values = values;
                   pending.push_back(pending_step);
                   // Checked before the step, so that no NaN reaches the weights.
                   if (check_every == 1) settle(at, epoch, lr);
                 });
        ++eager_steps;
      }
      if (options.after_step) options.after_step(model);
      if (step_timing) {
        const auto step_end = timing_point();
        batch_seconds += std::chrono::duration<double>(step_start - batch_start).count();
        step_seconds += std::chrono::duration<double>(step_end - step_start).count();
        ++timed_steps;
      }

      if (static_cast<int64_t>(pending.size()) >= check_every) settle(at, epoch, lr);
      // As stop_after_step: ranks agree through the totals' flag; one process asks at once.
      const bool stop = distributed ? stop_seen : stop_requested();
      if (stop && step + 1 < steps) {
        settle(at, epoch, lr);
        at.step = step + 1;
        save_state(at);
        throw_interrupted(options, epoch, at.step);
      }
    }
    settle(at, epoch, lr);
    if (step_timing && timed_steps > 0) {
      std::fprintf(stderr,
                   "nad: step timing: %s epoch %d: batch %.3f ms, step %.3f ms (means of %lld "
                   "steps, %lld replayed as a graph)\n",
                   options.label.c_str(), epoch + 1, 1000 * batch_seconds / timed_steps,
                   1000 * step_seconds / timed_steps, static_cast<long long>(timed_steps),
                   static_cast<long long>(CapturedWork::total_replays() - replays_before));
    }

    EpochRecord record;
    record.phase = options.label;
    record.epoch = epoch + 1;
    record.lr = lr;
    record.loss = at.mean_loss();
    record.train_acc = at.accuracy();
    // Without --sync-bn each rank's BatchNorm statistics followed its own shard; rank 0's are
    // kept, so that every rank evaluates and saves the same model.
    dist::broadcast_module(*model);
    std::string summary;
    if (evaluate) {
      if (std::optional<Metrics> metrics = evaluate(model)) {
        record.metrics = *metrics;
        summary = metrics->summary();
      }
    }
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.end_epoch(epoch, record.loss, record.train_acc, summary);
    records.push_back(record);
    const bool go_on = !options.keep_going || options.keep_going(model, epoch);
    const bool last = !go_on || epoch + 1 == options.epochs;
    save_state(epoch_end(epoch, last));
    if (!last && any_rank_stopping()) throw_interrupted(options, epoch + 1, 0);
    if (!go_on) break;
  }
  if (options.epochs == 0) save_state(epoch_end(-1, true));
  return records;
}

}  // namespace nad::train
