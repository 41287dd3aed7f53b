#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "nad/data/augment.h"
#include "nad/data/dataset.h"
#include "nad/models/classifier.h"
#include "nad/train/evaluate.h"
#include "nad/train/state.h"
#include "nad/util/flags.h"
#include "nad/util/stop.h"

namespace nad::train {

// Learning-rate schedules: constant; step (times gamma at each milestone); cosine (annealed
// per epoch towards 0); reference (the NAD code: lr for epochs 0-1, then lr / 10).
enum class Schedule { kConstant, kStep, kCosine, kReference };
Schedule parse_schedule(const std::string& text);
std::string schedule_name(Schedule schedule);

struct TrainOptions {
  int epochs = 10;
  int64_t batch_size = 128;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  bool nesterov = true;
  Schedule schedule = Schedule::kCosine;
  std::vector<int> milestones;  // step schedule
  double gamma = 0.1;           // step schedule
  data::AugmentOptions augment;
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  std::string label = "train";       // shown in progress lines
  std::string lr_option = flag::lr;  // named in the advice when the loss diverges
  bool quiet = false;
  // How many steps' losses may wait on the device before the loop reads them (checks that they
  // are finite, counts them, shows progress): 0 chooses 1 on the CPU and in distributed runs
  // (each loss checked before its step changes the weights) and 50 on one GPU (reading a loss
  // waits for the GPU to finish all queued work, which would keep it idle while the next step
  // is being launched; a diverged run is still reported at its first non-finite step).
  int64_t check_every = 0;
  // Called after every optimiser step, e.g. to keep pruned weights at zero.
  std::function<void(const models::Classifier&)> after_step;
  // Called after every epoch (after `evaluate`) with the 0-based epoch; returning false ends
  // training early (early stopping).
  std::function<bool(const models::Classifier&, int epoch)> keep_going;
  // Resumable runs: with a store, the loop saves its state under `state_key` after every
  // epoch and when a stop is requested (then throws Interrupted), and continues from a state
  // found there; a loop found complete returns its records at once, with its final weights.
  std::shared_ptr<const StateStore> state;
  std::string state_key;
  // The caller's state that belongs with the loop's (the closures above may keep some).
  std::function<void(LoopState&)> save_extra;
  std::function<void(const LoopState&)> load_extra;

  nlohmann::json to_json() const;
};

// Throws UserError for a loop that cannot run: epochs < 0, batches under 2 rows, a rate that is
// not positive (when given; a rate still to be searched is checked later). The pipelines call
// it before loading anything, train_model again for other callers.
void check_loop_options(int epochs, int64_t batch_size, std::optional<double> lr);

// The learning rate used during `epoch` (0-based).
double lr_at(const TrainOptions& options, int epoch);

// This process's part of one global batch: all of it in one process, a contiguous shard of it
// in each rank of a distributed run (every rank augmented the same global batch).
struct LocalBatch {
  torch::Tensor inputs;   // float N x C x H x W
  torch::Tensor targets;  // labels of the same rows
  int64_t global_rows = 0;
  int64_t local_rows = 0;
  // The weight of this rank's mean-loss gradients in the global batch's mean.
  double share() const { return static_cast<double>(local_rows) / global_rows; }
};
LocalBatch local_batch(const torch::Tensor& augmented, const torch::Tensor& labels,
                       const torch::Tensor& rows);

// The global batch's summed loss and correct predictions (summed over ranks, so that every
// rank sees the same numbers and stops together on a non-finite loss or a stop request).
struct BatchTotals {
  double loss_sum = 0;
  int64_t correct = 0;
  double mean_loss = 0;
  double mean_cross_entropy = 0;
  double mean_extra = 0;  // the extra loss term's mean (0 without one)
  bool has_extra = false;
  bool stop = false;  // some rank was asked to stop (see stop_after_step)
};
// `cross_entropy` and `extra` (may be undefined) are this rank's mean loss terms.
BatchTotals batch_totals(const LocalBatch& batch, const torch::Tensor& cross_entropy,
                         const torch::Tensor& extra, const torch::Tensor& logits);
// The same in two halves: the step's numbers on its device, without waiting for it (double
// [mean cross-entropy, mean extra term or 0, correct predictions]), and the totals from them
// once read (`values` points at those three numbers).
torch::Tensor step_values(const torch::Tensor& cross_entropy, const torch::Tensor& extra,
                          const torch::Tensor& logits, const torch::Tensor& targets);
BatchTotals totals_from_values(const double* values, int64_t global_rows, int64_t local_rows,
                               bool has_extra);

// Whether to stop after the step just taken: a stop request in this process, or, in a
// distributed run, in any rank as of the batch's totals (one collective serves both, so the
// ranks agree, a step later).
bool stop_after_step(const BatchTotals& totals);
// At an epoch's end: whether any rank was asked to stop (a collective in distributed runs).
bool any_rank_stopping();

// Where epoch `epoch` (0-based) starts: the position saved inside it when `resumed` stopped
// there, else a fresh permutation of `rows` drawn from `generator` and zero totals.
LoopPosition begin_epoch(const std::optional<LoopState>& resumed, int epoch, int64_t rows,
                         at::Generator& generator, torch::Device device);
// The position after epoch `epoch` (0-based; -1: before the first).
LoopPosition epoch_end(int epoch, bool complete);

// Throws DivergedError when a batch's loss is not finite, naming the loop, the epoch and step
// (1-based), each loss term and where the last good state is.
void check_finite(const BatchTotals& totals, const TrainOptions& options, int epoch, int64_t step,
                  double lr, const char* extra_name = "attention loss");

// Test hook: NAD_TEST_NAN_AT=LABEL:EPOCH:STEP makes that step's loss NaN (1-based), so tests
// can check how a diverging run stops.
bool inject_nan_here(const std::string& label, int epoch, int64_t step);

// Throws Interrupted (after the caller saved its state) naming where the run stopped.
[[noreturn]] void throw_interrupted(const TrainOptions& options, int epoch, int64_t step);

// An extra loss term added to cross-entropy (NAD's attention loss), given the batch inputs
// and the model's output on them.
using ExtraLoss =
    std::function<torch::Tensor(const torch::Tensor& inputs, const models::ModelOutput& output)>;
// Called after each epoch; returns the epoch's metrics, or nothing when it only took note of
// the model (a snapshot to measure later).
using EpochEvaluation = std::function<std::optional<Metrics>(const models::Classifier& model)>;

// Trains `model` in place with SGD on `data` (uint8 images on any device; moved to
// options.device). Throws std::runtime_error("... diverged ...") when the loss is not finite.
std::vector<EpochRecord> train_model(const models::Classifier& model, const data::Dataset& data,
                                     const TrainOptions& options,
                                     const EpochEvaluation& evaluate = {},
                                     const ExtraLoss& extra_loss = {});

// Thrown when training produced a non-finite loss (too large a learning rate, usually).
class DivergedError : public RunStopped {
 public:
  explicit DivergedError(const std::string& message)
      : RunStopped(message, kDivergedExitCode, "diverged") {}
};

}  // namespace nad::train
