#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "nad/util/error.h"

namespace nad::data {

// Runs decode(i) for every i in [0, count) on at::get_num_threads() threads, handing out
// chunks dynamically. std::thread rather than at::parallel_for: with the OpenMP backend the
// latter only runs in parallel in files compiled with -fopenmp, and silently runs serially
// otherwise. The error of the lowest failing index is rethrown, so the message does not
// depend on timing.
template <typename Decode>
void parallel_decode(int64_t count, const Decode& decode) {
  constexpr int64_t kChunk = 64;
  if (count == 0) return;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> first_failed{count};
  std::mutex mutex;
  std::string message;
  const auto worker = [&] {
    while (true) {
      const int64_t begin = next.fetch_add(kChunk);
      if (begin >= count || begin >= first_failed.load()) return;
      for (int64_t i = begin; i < std::min(count, begin + kChunk); ++i) {
        try {
          decode(i);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mutex);
          if (i < first_failed.load()) {
            first_failed = i;
            message = e.what();
          }
          return;
        }
      }
    }
  };
  const int64_t threads =
      std::min<int64_t>(std::max(at::get_num_threads(), 1), (count + kChunk - 1) / kChunk);
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // fewer threads is slower, not wrong
    }
  }
  worker();
  for (std::thread& thread : pool) thread.join();
  if (first_failed.load() < count) throw UserError(message);
}

}  // namespace nad::data
