#pragma once

namespace nad {
// Sets LibTorch's intra-op thread count once at start-up; 0 means all cores (shared evenly
// among the LOCAL_WORLD_SIZE processes of a distributed run).
void set_threads(int threads);
}  // namespace nad
