#include "nad/defenses/lr_search.h"

#include <algorithm>
#include <cstdio>

#include "nad/util/error.h"

namespace nad::defenses {

LrSearchResult search_lr(const LrSearchOptions& options, double baseline_val_acc,
                         const TrialRunner& run, double max_lr,
                         const std::function<void(const std::string&)>& log) {
  std::vector<double> grid;
  for (double lr : options.grid) {
    if (!(lr > 0)) throw UserError("--lr-grid values must be positive");
    if (lr <= max_lr * (1 + 1e-9)) grid.push_back(lr);
  }
  if (options.grid.empty()) throw UserError("--lr-grid is empty");
  if (grid.empty()) grid.push_back(*std::min_element(options.grid.begin(), options.grid.end()));
  std::sort(grid.begin(), grid.end());

  LrSearchResult result;
  result.baseline_val_acc = baseline_val_acc;
  double best = -1;
  for (double lr : grid) {
    LrTrial trial = run(lr);
    const bool first = !result.chosen.model;
    best = trial.diverged ? best : std::max(best, trial.val_acc);
    const bool accepted = !trial.diverged && trial.val_acc >= best - options.tolerance;
    result.tried.push_back(
        {{"lr", lr},
         {"val_acc", trial.diverged ? nlohmann::json(nullptr) : nlohmann::json(trial.val_acc)},
         {"accepted", accepted}});
    if (log) {
      char line[200];
      std::snprintf(line, sizeof line,
                    "lr %.4g: validation accuracy %.2f%% (best finetuned %.2f%%, original %.2f%%, "
                    "tolerance %.1f) -> %s",
                    lr, trial.val_acc, best, baseline_val_acc, options.tolerance,
                    accepted ? "accepted" : (trial.diverged ? "diverged" : "rejected"));
      log(line);
    }
    if (!accepted && !first) break;
    // The smallest rate is kept even when it diverges, so the caller can report it.
    result.chosen = std::move(trial);
    if (!accepted) break;
  }
  return result;
}

}  // namespace nad::defenses
