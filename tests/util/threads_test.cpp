// run_single_threaded: every worker runs, each with one LibTorch thread, errors come back to
// the caller, and the caller's thread count survives.
#include "nad/util/threads.h"

#include <ATen/Config.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/thread_count.h"

namespace nad {
namespace {

using Threads = KeepsThreadCount;

TEST_F(Threads, EveryWorkerRunsSingleThreadedAndTheCallerKeepsItsCount) {
  at::set_num_threads(3);
  std::vector<int> seen(4, 0);
  std::vector<double> sums(4, 0);
  run_single_threaded(4, [&](int64_t w) {
    seen[static_cast<size_t>(w)] = at::get_num_threads();
    sums[static_cast<size_t>(w)] = torch::full({1000}, static_cast<double>(w)).sum().item<double>();
  });
  for (int64_t w = 0; w < 4; ++w) {
    EXPECT_EQ(sums[static_cast<size_t>(w)], 1000.0 * static_cast<double>(w));
#if AT_PARALLEL_OPENMP
    EXPECT_EQ(seen[static_cast<size_t>(w)], 1) << "worker " << w;
#endif
  }
  EXPECT_EQ(at::get_num_threads(), 3);
  // A thread started afterwards takes the caller's count, not a worker's.
  int later = 0;
  std::thread([&] { later = at::get_num_threads(); }).join();
  EXPECT_EQ(later, 3);
#if AT_PARALLEL_OPENMP
  EXPECT_EQ(single_thread_workers(), 3);
#endif
}

TEST_F(Threads, AWorkersExceptionReachesTheCallerAfterAllHaveRun) {
  at::set_num_threads(2);
  std::atomic<int> finished{0};
  EXPECT_THROW(run_single_threaded(3,
                                   [&](int64_t w) {
                                     if (w == 1) throw std::runtime_error("worker 1 failed");
                                     ++finished;
                                   }),
               std::runtime_error);
  EXPECT_EQ(finished.load(), 2);
  EXPECT_EQ(at::get_num_threads(), 2);
}

}  // namespace
}  // namespace nad
