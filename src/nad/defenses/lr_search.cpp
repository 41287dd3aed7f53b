#include "nad/defenses/lr_search.h"

#include <cstdio>

#include "nad/util/error.h"

namespace nad::defenses {

LrSearchResult search_lr(const LrSearchOptions& options, double baseline_val_acc,
                         const TrialRunner& run, const data::Dataset& validation,
                         double start_below, const std::function<void(const std::string&)>& log) {
  if (options.grid.empty()) throw UserError("the learning-rate grid is empty");
  std::vector<double> grid;
  for (double lr : options.grid) {
    if (lr <= start_below * (1 + 1e-9)) grid.push_back(lr);
  }
  if (grid.empty()) grid.push_back(options.grid.back());
  std::sort(grid.begin(), grid.end(), std::greater<double>());

  LrSearchResult result;
  result.baseline_val_acc = baseline_val_acc;
  for (size_t i = 0; i < grid.size(); ++i) {
    LrTrial trial = run(grid[i]);
    const bool accepted = !trial.diverged && trial.val_acc >= baseline_val_acc - options.tolerance;
    result.tried.push_back(
        {{"lr", grid[i]},
         {"val_acc", trial.diverged ? nlohmann::json(nullptr) : nlohmann::json(trial.val_acc)},
         {"accepted", accepted}});
    if (log) {
      char line[160];
      std::snprintf(line, sizeof line,
                    "lr %.4g: validation accuracy %.2f%% (original %.2f%%, tolerance %.1f) -> %s",
                    grid[i], trial.val_acc, baseline_val_acc, options.tolerance,
                    accepted ? "accepted" : (trial.diverged ? "diverged" : "rejected"));
      log(line);
    }
    if (accepted || i + 1 == grid.size()) {
      result.chosen = std::move(trial);
      break;
    }
  }
  return result;
}

}  // namespace nad::defenses
