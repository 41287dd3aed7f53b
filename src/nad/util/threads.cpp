#include "nad/util/threads.h"

#include <ATen/Config.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

namespace nad {
void set_threads(int threads) {
  if (threads <= 0) {
    threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // Several processes of one distributed run on this machine share its cores.
    if (const char* local = std::getenv("LOCAL_WORLD_SIZE")) {
      const int processes = std::atoi(local);
      if (processes > 1) threads = std::max(1, threads / processes);
    }
  }
  at::set_num_threads(threads);
}

namespace {
std::atomic<bool> workers_enabled{true};
}  // namespace

void enable_single_thread_workers(bool enabled) { workers_enabled = enabled; }

int64_t single_thread_workers() {
#if AT_PARALLEL_OPENMP
  return workers_enabled ? at::get_num_threads() : 1;
#else
  return 1;
#endif
}

void run_single_threaded(int64_t workers, const std::function<void(int64_t)>& work) {
  [[maybe_unused]] const int threads = at::get_num_threads();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  std::vector<std::thread> pool;
  for (int64_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      try {
        // With OpenMP a thread's count is its own, but ATen also keeps it in a global that
        // each thread copies on first use: take that copy, then set this thread's count.
        at::get_num_threads();
#if AT_PARALLEL_OPENMP
        at::set_num_threads(1);
#endif
        work(w);
      } catch (...) {
        errors[static_cast<size_t>(w)] = std::current_exception();
      }
    });
  }
  for (auto& thread : pool) thread.join();
#if AT_PARALLEL_OPENMP
  // The workers' set_num_threads(1) also reached the global; put the caller's count back.
  at::set_num_threads(threads);
#endif
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}
}  // namespace nad
