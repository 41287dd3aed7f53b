#include "nad/defenses/lr_search.h"

#include <algorithm>
#include <cstdio>

#include "nad/util/error.h"

namespace nad::defenses {

namespace {

nlohmann::json record_trial(const LrTrial& trial, double reference, bool accepted,
                            const std::string& reference_name, double tolerance,
                            const std::function<void(const std::string&)>& log) {
  if (log) {
    char line[200];
    std::snprintf(line, sizeof line,
                  "lr %.4g: validation accuracy %.2f%% (%s %.2f%%, tolerance %.1f) -> %s", trial.lr,
                  trial.val_acc, reference_name.c_str(), reference, tolerance,
                  accepted ? "accepted" : (trial.diverged ? "diverged" : "rejected"));
    log(line);
  }
  return {{"lr", trial.lr},
          {"val_acc", trial.diverged ? nlohmann::json(nullptr) : nlohmann::json(trial.val_acc)},
          {"accepted", accepted}};
}

}  // namespace

LrSearchResult search_lr(const LrSearchOptions& options, double baseline_val_acc,
                         const TrialRunner& run,
                         const std::function<void(const std::string&)>& log) {
  if (options.grid.empty()) throw UserError("--lr-grid is empty");
  std::vector<double> grid;
  for (double lr : options.grid) {
    if (!(lr > 0)) throw UserError("--lr-grid values must be positive");
    if (!options.step_down_from || lr <= *options.step_down_from * (1 + 1e-9)) grid.push_back(lr);
  }
  LrSearchResult result;
  result.baseline_val_acc = baseline_val_acc;

  if (options.step_down_from) {
    if (grid.empty()) grid.push_back(*std::min_element(options.grid.begin(), options.grid.end()));
    std::sort(grid.rbegin(), grid.rend());
    for (size_t i = 0; i < grid.size(); ++i) {
      LrTrial trial = run(grid[i]);
      const bool accepted =
          !trial.diverged && trial.val_acc >= options.reference_val_acc - options.tolerance;
      result.tried.push_back(record_trial(trial, options.reference_val_acc, accepted,
                                          "teacher search best", options.tolerance, log));
      if (accepted || i + 1 == grid.size()) {
        result.chosen = std::move(trial);
        break;
      }
    }
    return result;
  }

  std::sort(grid.begin(), grid.end());
  double best = -1;
  for (double lr : grid) {
    LrTrial trial = run(lr);
    const bool first = !result.chosen.model;
    best = trial.diverged ? best : std::max(best, trial.val_acc);
    const bool accepted = !trial.diverged && trial.val_acc >= best - options.tolerance;
    result.tried.push_back(
        record_trial(trial, best, accepted, "best finetuned", options.tolerance, log));
    if (!accepted && !first) break;
    // The smallest rate is kept even when it diverges, so the caller can report it.
    result.chosen = std::move(trial);
    if (!accepted) break;
  }
  return result;
}

}  // namespace nad::defenses
