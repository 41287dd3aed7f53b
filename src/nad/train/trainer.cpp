#include "nad/train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <optional>

#include "nad/dist/process_group.h"
#include "nad/train/cuda_graph.h"
#include "nad/train/sgd.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"
#include "nad/util/progress.h"

namespace nad::train {

Schedule parse_schedule(const std::string& text) {
  if (text == "constant") return Schedule::kConstant;
  if (text == "step") return Schedule::kStep;
  if (text == "cosine") return Schedule::kCosine;
  if (text == "reference") return Schedule::kReference;
  throw UserError(flag::schedule + " must be constant, step, cosine or reference, not '" + text +
                  "'");
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
  if (epochs < 0) throw UserError(flag::epochs + " must be >= 0");
  if (batch_size < 2) throw UserError(flag::batch_size + " must be at least 2");
  if (lr && !(*lr > 0)) throw UserError(flag::lr + " must be positive");
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

// One run of train_model, in parts: setting up (the constructor: device, optimiser, resumed
// state), one optimisation step, the captured CUDA-graph step, reading the steps' numbers back,
// an epoch's steps, and the epoch's end (record, evaluation, saved state, stop).
class TrainLoop {
 public:
  TrainLoop(const models::Classifier& model, const data::Dataset& data, const TrainOptions& options,
            const EpochEvaluation& evaluate, const ExtraLoss& extra_loss)
      : model_(model),
        options_(options),
        evaluate_(evaluate),
        extra_loss_(extra_loss),
        device_(options.device) {
    check_loop_options(options.epochs, options.batch_size, options.lr);
    model_->to(device_);
    // Graphs need a stream other than the default one; the whole loop runs on it.
    stream_.emplace(device_);
    images_ = data.images.to(device_);
    labels_ = data.labels.to(device_);
    rows_ = data.size();
    steps_ = (rows_ + options.batch_size - 1) / options.batch_size;
    progress_.emplace(options.label, options.epochs, steps_, options.quiet);
    distributed_ = dist::is_distributed();
    check_every_ = options.check_every > 0 ? options.check_every
                                           : (device_.is_cuda() && !distributed_ ? 50 : 1);
    use_graphs_ = device_.is_cuda() && !distributed_ && compute_options().cuda_graphs &&
                  cuda_graphs_supported();
    optimizer_.emplace(model_->parameters(), torch::optim::SGDOptions(options.lr)
                                                 .momentum(options.momentum)
                                                 .nesterov(options.nesterov)
                                                 .weight_decay(options.weight_decay));
    generator_ = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    // Data parallel: every rank starts from rank 0's weights and draws the same permutation and
    // augmentation (same seed), then trains on its own rows of each global batch.
    dist::broadcast_module(*model_);
    parameters_ = model_->parameters();
    trained_ = parameters_;
    for (const auto& b : model_->buffers()) trained_.push_back(b);

    // Where an earlier process left this loop (every rank reads the same file).
    stateful_ = options.state && !options.state_key.empty();
    if (stateful_) resumed_ = options.state->load(options.state_key);
    if (resumed_) {
      restore_loop_state(*resumed_, trained_, *optimizer_, parameters_, generator_,
                         options.state->file(options.state_key).string());
      records_ = resumed_->records;
      if (options.load_extra) options.load_extra(*resumed_);
    }
    // Debug hook: NAD_STEP_TIMING=1 times each step's batch preparation and its optimisation
    // step, waiting for the device around each (so the run is slower), and prints the means per
    // epoch.
    step_timing_ = std::getenv("NAD_STEP_TIMING") != nullptr;
  }

  std::vector<EpochRecord> run() {
    if (resumed_ && resumed_->complete) return records_;
    const int first_epoch = resumed_ ? resumed_->epoch : 0;
    for (int epoch = first_epoch; epoch < options_.epochs; ++epoch) {
      if (!run_epoch(epoch)) break;
    }
    if (options_.epochs == 0) save_state(epoch_end(-1, true));
    return records_;
  }

 private:
  // A step whose numbers (step_values) are still on the device.
  struct PendingStep {
    int64_t step = 0;
    int64_t global_rows = 0;
    int64_t local_rows = 0;
    torch::Tensor values;
  };
  // Steps before a loop captures its step as a CUDA graph: LibTorch initialises its libraries'
  // state lazily, and SGD creates its momentum buffers, in the first steps.
  static constexpr int64_t kEagerStepsBeforeCapture = 2;

  void save_state(const LoopPosition& at) {
    if (!stateful_) return;
    LoopState state =
        capture_loop_state(at, trained_, *optimizer_, parameters_, generator_, records_);
    if (options_.save_extra) options_.save_extra(state);
    options_.state->save(options_.state_key, state);
  }

  // One optimisation step; returns its step_values. `before_update` sees them before the
  // weights change (eager steps only: a captured step cannot stop in the middle).
  torch::Tensor optimisation_step(const torch::Tensor& inputs, const torch::Tensor& targets,
                                  double share, bool inject_nan,
                                  const std::function<void(const torch::Tensor&)>& before_update) {
    models::ModelOutput output;
    torch::Tensor cross_entropy, extra, loss;
    {
      AutocastScope autocast(device_);
      output = model_->forward(inputs);
      cross_entropy = torch::cross_entropy_loss(output.logits.to(torch::kFloat), targets);
      if (inject_nan) cross_entropy = cross_entropy * std::numeric_limits<float>::quiet_NaN();
      loss = cross_entropy;
      if (extra_loss_) {
        extra = extra_loss_(inputs, output);
        loss = loss + extra;
      }
    }
    const torch::Tensor values =
        step_values(cross_entropy.detach(), extra.defined() ? extra.detach() : extra,
                    output.logits.detach(), targets);
    if (before_update) before_update(values);
    clear_gradients(parameters_);
    loss.backward();
    dist::average_gradients(parameters_, share);
    sgd_step(*optimizer_);
    return values;
  }

  // The step as the captured CUDA graph, captured first (again when the learning rate changed:
  // the rate is part of the recorded kernels); its inputs stay in place. False where graphs are
  // off or capture failed: the step then runs eagerly.
  bool replay_captured_step(const LocalBatch& local, double lr, PendingStep& pending_step) {
    if (!graph_.captured() || graph_lr_ != lr) {
      if (!static_inputs_.defined()) {
        static_inputs_ = torch::empty_like(local.inputs);
        static_targets_ = torch::empty_like(local.targets);
      }
      try {
        clear_gradients(parameters_);  // backward in the graph makes them, in its memory
        graph_.capture(
            [&] { return optimisation_step(static_inputs_, static_targets_, 1.0, false, {}); });
        graph_lr_ = lr;
      } catch (const std::exception& e) {
        use_graphs_ = false;
        clear_gradients(parameters_);
        std::fprintf(stderr, "nad: warning: %s: CUDA graph capture failed, going on without (%s)\n",
                     options_.label.c_str(), e.what());
        return false;
      }
    }
    static_inputs_.copy_(local.inputs);
    static_targets_.copy_(local.targets);
    pending_step.values = graph_.replay().clone();
    pending_.push_back(pending_step);
    return true;
  }

  // Reads the pending steps' numbers (one wait for all of them), checks them in order and counts
  // them; a non-finite loss is reported at its own step.
  void settle(LoopPosition& at, int epoch, double lr) {
    stop_seen_ = false;
    if (pending_.empty()) return;
    std::vector<torch::Tensor> values;
    for (const auto& p : pending_) values.push_back(p.values);
    const torch::Tensor host = torch::stack(values).to(torch::kCPU, torch::kDouble).contiguous();
    const double* v = host.data_ptr<double>();
    const std::vector<PendingStep> steps_read = std::move(pending_);
    pending_.clear();
    for (size_t i = 0; i < steps_read.size(); ++i) {
      const PendingStep& p = steps_read[i];
      const BatchTotals totals = totals_from_values(v + 3 * i, p.global_rows, p.local_rows,
                                                    static_cast<bool>(extra_loss_));
      check_finite(totals, options_, epoch, p.step, lr);
      at.add(totals.loss_sum, totals.correct, p.global_rows);
      progress_->step(epoch, p.step + 1, at.mean_loss(), at.accuracy());
      stop_seen_ = stop_seen_ || stop_after_step(totals);
    }
  }

  std::chrono::steady_clock::time_point timing_point() const {
    if (device_.is_cuda()) torch::cuda::synchronize();
    return std::chrono::steady_clock::now();
  }

  // The epoch's steps, then its end; false when the loop stops early (keep_going said so).
  bool run_epoch(int epoch) {
    const auto start = std::chrono::steady_clock::now();
    const double lr = lr_at(options_, epoch);
    for (auto& group : optimizer_->param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
    }
    model_->train();
    LoopPosition at = begin_epoch(resumed_, epoch, rows_, generator_, device_);
    double batch_seconds = 0, step_seconds = 0;
    int64_t timed_steps = 0;
    const int64_t replays_before = CapturedWork::total_replays();
    for (int64_t step = at.step; step < steps_; ++step) {
      const auto batch_start = step_timing_ ? timing_point() : std::chrono::steady_clock::now();
      torch::Tensor rows =
          at.order.slice(0, step * options_.batch_size, (step + 1) * options_.batch_size);
      // BatchNorm cannot train on a single sample; a lone leftover row waits for next epoch.
      if (rows.size(0) < 2) continue;
      torch::Tensor batch =
          data::augment_batch(images_.index_select(0, rows), options_.augment, generator_);
      const LocalBatch local = local_batch(batch, labels_, rows);
      const bool inject_nan = inject_nan_here(options_.label, epoch, step);
      PendingStep pending_step{step, local.global_rows, local.local_rows, {}};
      const auto step_start = step_timing_ ? timing_point() : batch_start;

      const bool replayed =
          use_graphs_ && !inject_nan && eager_steps_ >= kEagerStepsBeforeCapture &&
          local.global_rows == options_.batch_size && replay_captured_step(local, lr, pending_step);
      if (!replayed) {
        optimisation_step(local.inputs, local.targets, local.share(), inject_nan,
                          [&](const torch::Tensor& values) {
                            pending_step.values = values;
                            pending_.push_back(pending_step);
                            // Checked before the step, so that no NaN reaches the weights.
                            if (check_every_ == 1) settle(at, epoch, lr);
                          });
        ++eager_steps_;
      }
      if (options_.after_step) options_.after_step(model_);
      if (step_timing_) {
        const auto step_end = timing_point();
        batch_seconds += std::chrono::duration<double>(step_start - batch_start).count();
        step_seconds += std::chrono::duration<double>(step_end - step_start).count();
        ++timed_steps;
      }

      if (static_cast<int64_t>(pending_.size()) >= check_every_) settle(at, epoch, lr);
      // As stop_after_step: ranks agree through the totals' flag; one process asks at once.
      const bool stop = distributed_ ? stop_seen_ : stop_requested();
      if (stop && step + 1 < steps_) {
        settle(at, epoch, lr);
        at.step = step + 1;
        save_state(at);
        throw_interrupted(options_, epoch, at.step);
      }
    }
    settle(at, epoch, lr);
    if (step_timing_ && timed_steps > 0) {
      std::fprintf(stderr,
                   "nad: step timing: %s epoch %d: batch %.3f ms, step %.3f ms (means of %lld "
                   "steps, %lld replayed as a graph)\n",
                   options_.label.c_str(), epoch + 1, 1000 * batch_seconds / timed_steps,
                   1000 * step_seconds / timed_steps, static_cast<long long>(timed_steps),
                   static_cast<long long>(CapturedWork::total_replays() - replays_before));
    }
    return end_epoch(epoch, lr, at, start);
  }

  // The epoch's record (with the evaluation), its saved state and the stop checks; false when
  // keep_going ends the loop.
  bool end_epoch(int epoch, double lr, const LoopPosition& at,
                 std::chrono::steady_clock::time_point start) {
    EpochRecord record;
    record.phase = options_.label;
    record.epoch = epoch + 1;
    record.lr = lr;
    record.loss = at.mean_loss();
    record.train_acc = at.accuracy();
    // Without --sync-bn each rank's BatchNorm statistics followed its own shard; rank 0's are
    // kept, so that every rank evaluates and saves the same model.
    dist::broadcast_module(*model_);
    std::string summary;
    if (evaluate_) {
      if (std::optional<Metrics> metrics = evaluate_(model_)) {
        record.metrics = *metrics;
        summary = metrics->summary();
      }
    }
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress_->end_epoch(epoch, record.loss, record.train_acc, summary);
    records_.push_back(record);
    const bool go_on = !options_.keep_going || options_.keep_going(model_, epoch);
    const bool last = !go_on || epoch + 1 == options_.epochs;
    save_state(epoch_end(epoch, last));
    if (!last && any_rank_stopping()) throw_interrupted(options_, epoch + 1, 0);
    return go_on;
  }

  const models::Classifier& model_;
  const TrainOptions& options_;
  const EpochEvaluation& evaluate_;
  const ExtraLoss& extra_loss_;
  const torch::Device device_;
  std::optional<OwnCudaStream> stream_;
  torch::Tensor images_, labels_;
  int64_t rows_ = 0, steps_ = 0, check_every_ = 1;
  bool distributed_ = false, use_graphs_ = false, stateful_ = false, step_timing_ = false;
  std::optional<torch::optim::SGD> optimizer_;
  at::Generator generator_;
  std::vector<torch::Tensor> parameters_, trained_;  // trained: parameters and buffers
  std::optional<LoopState> resumed_;
  std::vector<EpochRecord> records_;
  // The captured step (CUDA) and its fixed inputs.
  CapturedWork graph_;
  double graph_lr_ = 0;
  torch::Tensor static_inputs_, static_targets_;
  int64_t eager_steps_ = 0;
  std::optional<Progress> progress_;
  std::vector<PendingStep> pending_;
  bool stop_seen_ = false;  // a stop request among the steps settled last
};

}  // namespace

std::vector<EpochRecord> train_model(const models::Classifier& model, const data::Dataset& data,
                                     const TrainOptions& options, const EpochEvaluation& evaluate,
                                     const ExtraLoss& extra_loss) {
  return TrainLoop(model, data, options, evaluate, extra_loss).run();
}

}  // namespace nad::train
