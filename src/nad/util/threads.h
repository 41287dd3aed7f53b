#pragma once
#include <cstdint>
#include <functional>

namespace nad {
// Sets LibTorch's intra-op thread count once at start-up; 0 means all cores (shared evenly
// among the LOCAL_WORLD_SIZE processes of a distributed run).
void set_threads(int threads);

// How many single-threaded workers should share CPU work that splits into independent pieces
// (evaluation batches): the intra-op thread count where a thread can set its own count
// (LibTorch's OpenMP backend), else 1; 1 when turned off below.
int64_t single_thread_workers();
// Turns that split on or off (on by default; nad_bench --split-eval measures both).
void enable_single_thread_workers(bool enabled);

// Runs work(0) .. work(workers - 1) at once, each on its own thread whose LibTorch operators
// run single-threaded, and returns when all are done; the first exception thrown is rethrown.
// The caller's thread count is unchanged afterwards.
void run_single_threaded(int64_t workers, const std::function<void(int64_t)>& work);
}  // namespace nad
