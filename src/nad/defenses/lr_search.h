#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "nad/data/dataset.h"
#include "nad/models/classifier.h"
#include "nad/train/trainer.h"

namespace nad::defenses {

// `--lr auto`: without any knowledge of the attack, take the largest learning rate whose
// finetuned model keeps validation accuracy (held-out clean data) within `tolerance` points of
// the best finetuned model seen. Large rates erase backdoors best, but how large a rate a
// model tolerates depends on the model and the data, which only validation can tell.
//
// The reference is the best *finetuned* model, not the original: the held-out images come from
// the training set the model may have memorised, so finetuning at any rate loses some of that
// memorised accuracy (measured here on CIFAR-10: 88.4% on the hold-out before, 86.4% after the
// gentlest finetuning, 83.1% on the test set). Comparing finetuned models with each other
// measures only the damage a larger rate adds.
//
// The hold-out is small (10% of a 5% subset: 250 CIFAR-10 images), so two runs' accuracies differ
// by chance by about two points. A rate counts as within tolerance unless its loss against the
// reference exceeds `tolerance` by more than `noise_margin` standard errors of the paired
// difference (computed from the images on which the two runs disagree). So a chance shortfall
// no longer flips the choice to a gentler rate: ties go to the larger rate, which erases more.
// What `--select-by scan` measures on a candidate model without attack knowledge: the share of
// held-out clean images (of other classes) that the reversed trigger of the scan's most
// anomalous class, found on the model before the defense, still sends to that class.
struct BackdoorSignal {
  double percent = 0;
  int64_t images = 0;  // the images it was measured on
};
using BackdoorProbe = std::function<BackdoorSignal(const models::Classifier& model)>;

struct LrSearchOptions {
  std::vector<double> grid = {0.002, 0.005, 0.01, 0.02, 0.05, 0.1};
  double tolerance = 2.0;     // percentage points of validation accuracy
  double noise_margin = 1.0;  // standard errors of the paired difference (0: the bare tolerance)
  // Step-down mode (NAD's student): start at this rate and step down the grid until a run's
  // validation accuracy is within `tolerance` of `reference_val_acc` (the teacher search's
  // best). Unset: the ascending search above.
  std::optional<double> step_down_from;
  double reference_val_acc = 0;
  torch::Tensor reference_val_correct;  // per hold-out image; undefined: no noise margin
  // --select-by scan (ascending mode): among the accepted rates, the one whose model `probe`
  // finds least backdoored; a larger rate wins unless its signal exceeds the lowest by more
  // than `noise_margin` standard errors (and a point). Unset: the largest accepted rate.
  BackdoorProbe probe;
};

// One run: trains a fresh copy of the model at `lr` and returns it with its epoch records.
struct LrTrial {
  double lr = 0;
  models::Classifier model;
  std::vector<train::EpochRecord> records;
  std::vector<std::vector<torch::Tensor>> epoch_weights;  // to measure the chosen run later
  double val_acc = 0;
  // Per hold-out image, whether this run classified it correctly (bool, CPU), for the paired
  // noise estimate; undefined when the runner does not provide it.
  torch::Tensor val_correct;
  bool diverged = false;
  int best_epoch = 0;  // with early stopping: the 1-based epoch whose weights were kept
};
using TrialRunner = std::function<LrTrial(double lr)>;

struct LrSearchResult {
  LrTrial chosen;
  double baseline_val_acc = 0;  // the original model, for the record
  // {lr, val_acc, accepted, noise_margin}; with a probe also candidate (accepted and still within
  // tolerance of the final best), backdoor_signal (candidates) and chosen
  std::vector<nlohmann::json> tried;
  torch::Tensor best_val_correct;  // the best run's per-image hold-out results
};

// One standard error, in percentage points, of the accuracy difference between two runs scored
// on the same images (`a`, `b`: bool per image). 0 when either is undefined.
double paired_standard_error(const torch::Tensor& a, const torch::Tensor& b);

// Index of the probe's choice among `signals` (ascending rates): the largest rate whose signal is
// within max(1 point, `noise_margin` binomial standard errors of the lowest) of the lowest.
size_t least_backdoored(const std::vector<BackdoorSignal>& signals, double noise_margin);

// Ascending mode: tries the grid from the smallest rate up, keeping the best validation accuracy
// seen, and stops at the first rate that falls more than `tolerance` (plus the noise margin)
// below it (or diverges);
// the last accepted run is returned whole (with a probe: the accepted run it finds least
// backdoored, ties to the larger rate). Step-down mode: tries the rates at or below
// `step_down_from`, largest first, and returns the first accepted run (or the smallest rate's).
LrSearchResult search_lr(const LrSearchOptions& options, double baseline_val_acc,
                         const TrialRunner& run,
                         const std::function<void(const std::string&)>& log = {});

}  // namespace nad::defenses
