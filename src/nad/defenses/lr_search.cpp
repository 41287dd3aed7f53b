#include "nad/defenses/lr_search.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::defenses {

namespace {

// The rule's test: `trial` is within tolerance of a reference run scoring `reference` (its
// per-image results `reference_correct`) when its shortfall is at most the tolerance plus the
// noise margin (in points, also returned).
struct ToleranceTest {
  bool within = false;
  double margin = 0;
};

ToleranceTest tolerance_test(const LrTrial& trial, double reference,
                             const torch::Tensor& reference_correct,
                             const LrSearchOptions& options) {
  const double margin =
      options.noise_margin * paired_standard_error(trial.val_correct, reference_correct);
  return {!trial.diverged && reference - trial.val_acc <= options.tolerance + margin, margin};
}

// The test, logged, and the record of the decision.
struct Verdict {
  bool accepted = false;
  nlohmann::json record;
};

Verdict judge(const LrTrial& trial, double reference, const torch::Tensor& reference_correct,
              const std::string& reference_name, const LrSearchOptions& options,
              const std::function<void(const std::string&)>& log) {
  Verdict v;
  const auto [within, margin] = tolerance_test(trial, reference, reference_correct, options);
  v.accepted = within;
  if (log) {
    char line[240];
    std::snprintf(line, sizeof line,
                  "lr %.4g: validation accuracy %.2f%% (%s %.2f%%, tolerance %.1f + noise %.2f) "
                  "-> %s",
                  trial.lr, trial.val_acc, reference_name.c_str(), reference, options.tolerance,
                  margin, v.accepted ? "accepted" : (trial.diverged ? "diverged" : "rejected"));
    log(line);
  }
  v.record = {{"lr", trial.lr},
              {"val_acc", trial.diverged ? nlohmann::json(nullptr) : nlohmann::json(trial.val_acc)},
              {"accepted", v.accepted},
              {"noise_margin", margin}};
  return v;
}

}  // namespace

double paired_standard_error(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || a.numel() != b.numel()) return 0;
  const torch::Tensor x = a.to(torch::kCPU, torch::kBool);
  const torch::Tensor y = b.to(torch::kCPU, torch::kBool);
  const double n = static_cast<double>(x.numel());
  const double only_a = x.logical_and(y.logical_not()).sum().item<double>();
  const double only_b = y.logical_and(x.logical_not()).sum().item<double>();
  // Variance of the mean of the per-image differences (+1, -1 or 0).
  const double mean = (only_a - only_b) / n;
  const double variance = std::max(0.0, (only_a + only_b) / n - mean * mean) / n;
  return 100.0 * std::sqrt(variance);
}

size_t least_backdoored(const std::vector<BackdoorSignal>& signals, double noise_margin) {
  if (signals.empty()) throw std::logic_error("least_backdoored: no candidates");
  size_t lowest = 0;
  for (size_t i = 1; i < signals.size(); ++i) {
    if (signals[i].percent < signals[lowest].percent) lowest = i;
  }
  const double p = signals[lowest].percent / 100.0;
  const double n = static_cast<double>(std::max<int64_t>(1, signals[lowest].images));
  const double band = std::max(1.0, noise_margin * 100.0 * std::sqrt(p * (1 - p) / n));
  size_t chosen = lowest;
  for (size_t i = lowest + 1; i < signals.size(); ++i) {
    if (signals[i].percent <= signals[lowest].percent + band) chosen = i;
  }
  return chosen;
}

LrSearchResult search_lr(const LrSearchOptions& options, double baseline_val_acc,
                         const TrialRunner& run,
                         const std::function<void(const std::string&)>& log) {
  if (options.grid.empty()) throw UserError(flag::lr_grid + " is empty");
  if (!(options.noise_margin >= 0)) throw UserError(flag::lr_noise_margin + " must be >= 0");
  std::vector<double> grid;
  for (double lr : options.grid) {
    if (!(lr > 0)) throw UserError(flag::lr_grid + " values must be positive");
    if (!options.step_down_from || lr <= *options.step_down_from * (1 + 1e-9)) grid.push_back(lr);
  }
  LrSearchResult result;
  result.baseline_val_acc = baseline_val_acc;

  if (options.step_down_from) {
    if (grid.empty()) grid.push_back(*std::min_element(options.grid.begin(), options.grid.end()));
    std::sort(grid.rbegin(), grid.rend());
    for (size_t i = 0; i < grid.size(); ++i) {
      LrTrial trial = run(grid[i]);
      Verdict v = judge(trial, options.reference_val_acc, options.reference_val_correct,
                        "teacher search best", options, log);
      result.tried.push_back(std::move(v.record));
      if (v.accepted || i + 1 == grid.size()) {
        result.chosen = std::move(trial);
        break;
      }
    }
    result.best_val_correct = options.reference_val_correct;
    return result;
  }

  std::sort(grid.begin(), grid.end());
  double best = -1;
  // With a probe, every accepted run is a candidate: each with its record's index in `tried`.
  std::vector<std::pair<LrTrial, size_t>> accepted;
  for (double lr : grid) {
    LrTrial trial = run(lr);
    const bool first = !result.chosen.model && accepted.empty();
    if (!trial.diverged && trial.val_acc > best) {
      best = trial.val_acc;
      result.best_val_correct = trial.val_correct;
    }
    Verdict v = judge(trial, best, result.best_val_correct, "best finetuned", options, log);
    result.tried.push_back(std::move(v.record));
    if (!v.accepted && !first) break;
    if (!v.accepted) {
      // The smallest rate is kept even when it diverges, so the caller can report it.
      result.chosen = std::move(trial);
      accepted.clear();
      break;
    }
    if (options.probe) {
      accepted.emplace_back(std::move(trial), result.tried.size() - 1);
    } else {
      result.chosen = std::move(trial);
    }
  }
  if (!accepted.empty()) {
    // A rate accepted early may fall out of tolerance of a better run found later.
    std::vector<BackdoorSignal> signals;
    std::vector<LrTrial> candidates;
    for (auto& [trial, index] : accepted) {
      nlohmann::json& record = result.tried[index];
      const bool candidate = tolerance_test(trial, best, result.best_val_correct, options).within;
      record["candidate"] = candidate;
      if (!candidate) continue;
      const BackdoorSignal signal = options.probe(trial.model);
      record["backdoor_signal"] = signal.percent;
      if (log) {
        char line[160];
        std::snprintf(line, sizeof line,
                      "lr %.4g: the reversed trigger still sends %.2f%% of %lld held-out images "
                      "to its class",
                      trial.lr, signal.percent, static_cast<long long>(signal.images));
        log(line);
      }
      signals.push_back(signal);
      candidates.push_back(std::move(trial));
    }
    result.chosen = std::move(candidates[least_backdoored(signals, options.noise_margin)]);
    for (auto& record : result.tried) record["chosen"] = record["lr"] == result.chosen.lr;
  }
  return result;
}

}  // namespace nad::defenses
