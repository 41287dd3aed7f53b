#include "nad/util/threads.h"

#include <torch/torch.h>

#include <cstdlib>
#include <thread>

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
}  // namespace nad
