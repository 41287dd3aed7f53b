#pragma once

namespace nad {
// Sets LibTorch's intra-op thread count once at start-up; 0 means all cores.
void set_threads(int threads);
}  // namespace nad
