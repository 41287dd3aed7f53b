#include "nad/util/progress.h"

#include <unistd.h>

#include <cmath>

namespace nad {
namespace {
bool progress_enabled = true;
}  // namespace

void set_progress_enabled(bool enabled) { progress_enabled = enabled; }

std::string format_seconds(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buffer[32];
  if (s >= 3600) {
    std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%ldm%02lds", s / 60, s % 60);
  }
  return buffer;
}

Progress::Progress(std::string label, int epochs, int64_t steps_per_epoch, bool quiet)
    : label_(std::move(label)),
      epochs_(epochs),
      steps_per_epoch_(std::max<int64_t>(1, steps_per_epoch)),
      quiet_(quiet || !progress_enabled),
      terminal_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

std::string Progress::eta(int epoch, int64_t step) const {
  const double done = static_cast<double>(epoch) * steps_per_epoch_ + step;
  const double total = static_cast<double>(epochs_) * steps_per_epoch_;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (done <= 0) return "?";
  return format_seconds(elapsed * (total - done) / done);
}

void Progress::step(int epoch, int64_t step, double loss, double accuracy) {
  if (quiet_ || !terminal_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(200) && step != steps_per_epoch_) return;
  last_draw_ = now;
  std::fprintf(stderr, "\r\033[K%s epoch %d/%d step %ld/%ld loss %.4f acc %.2f%% left %s",
               label_.c_str(), epoch + 1, epochs_, static_cast<long>(step),
               static_cast<long>(steps_per_epoch_), loss, accuracy, eta(epoch, step).c_str());
  std::fflush(stderr);
}

void Progress::end_epoch(int epoch, double loss, double train_accuracy,
                         const std::string& summary) {
  if (quiet_) return;
  std::fprintf(stderr, "%s%s epoch %d/%d loss %.4f train-acc %.2f%% %s left %s\n",
               terminal_ ? "\r\033[K" : "", label_.c_str(), epoch + 1, epochs_, loss,
               train_accuracy, summary.c_str(), eta(epoch + 1, 0).c_str());
  std::fflush(stderr);
}

void Progress::message(const std::string& text) {
  if (quiet_) return;
  std::fprintf(stderr, "%s%s\n", terminal_ ? "\r\033[K" : "", text.c_str());
  std::fflush(stderr);
}

}  // namespace nad
