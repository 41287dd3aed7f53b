#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "nad/util/compute.h"

namespace nad {

// `--precision auto`: bf16 where it is clearly faster than fp32 on this machine and keeps the
// results, else fp32. Whether it is faster depends on the CPU's kernels, not only its flags
// (measured: AMX Xeons run bf16 training 1.9x faster; a CPU that emulates bf16 runs it slower),
// so it is measured: a few training steps of a small convolutional net in each precision. The
// result is cached per machine (CPU or GPU model, threads, LibTorch version), so every run on a
// machine computes in the same precision.
struct PrecisionTiming {
  double fp32_ms = 0;  // one training step (forward, loss, backward), the fastest of the tries
  double bf16_ms = 0;
  double loss_difference = 0;  // |bf16 loss - fp32 loss| / fp32 loss on the same batch
};

struct PrecisionChoice {
  Precision precision = Precision::kFp32;
  std::string reason;
  std::optional<PrecisionTiming> timing;  // unset: nothing was measured
  bool from_cache = false;
  std::string machine;  // the cache key
  nlohmann::json to_json() const;
};

// bf16 must be at least this much faster to be chosen (fp32 is exact; a tie keeps it), and its
// loss on the benchmark batch within `kMaxLossDifference` of fp32's.
inline constexpr double kBf16SpeedupNeeded = 1.1;
inline constexpr double kMaxLossDifference = 0.02;

// The rule, on a measurement.
PrecisionChoice decide_precision(const PrecisionTiming& timing);

// Times the benchmark step on `device` (process-wide compute options are restored after).
PrecisionTiming measure_precisions(torch::Device device);

// The machine's key in the cache: device model, threads, LibTorch version.
std::string machine_key(torch::Device device);

// $XDG_CACHE_HOME/nad/precision.json, else ~/.cache/nad/precision.json; empty when neither is
// set.
std::filesystem::path precision_cache_file();

// The cached measurement for `machine`, if any (a damaged cache counts as none).
std::optional<PrecisionTiming> cached_timing(const std::filesystem::path& cache,
                                             const std::string& machine);
// Records a measurement; a cache that cannot be written is skipped (nothing is lost but time).
void cache_timing(const std::filesystem::path& cache, const std::string& machine,
                  const PrecisionTiming& timing);

// --precision auto on `device`: the cached measurement, else a fresh one (then cached). CPUs
// without native bf16 arithmetic take fp32 without measuring.
PrecisionChoice choose_precision(torch::Device device);

}  // namespace nad
