#pragma once
#include <chrono>
#include <cstdio>
#include <string>

namespace nad {

// Reports training progress: on a terminal one line redrawn in place (epoch, step, loss,
// accuracy, time left); otherwise one plain line per epoch, so logs stay readable.
class Progress {
 public:
  Progress(std::string label, int epochs, int64_t steps_per_epoch, bool quiet = false);
  void step(int epoch, int64_t step, double loss, double accuracy);
  // Ends the epoch's line with the evaluation summary (already formatted).
  void end_epoch(int epoch, double loss, double train_accuracy, const std::string& summary);
  // A line of its own, for messages between epochs.
  void message(const std::string& text);

 private:
  std::string eta(int epoch, int64_t step) const;

  std::string label_;
  int epochs_;
  int64_t steps_per_epoch_;
  bool quiet_;
  bool terminal_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_seconds(double seconds);

// Off in the ranks of a distributed run other than rank 0: their progress would repeat rank
// 0's, interleaved.
void set_progress_enabled(bool enabled);

}  // namespace nad
