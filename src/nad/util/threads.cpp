#include "nad/util/threads.h"

#include <torch/torch.h>

#include <thread>

namespace nad {
void set_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
}
}  // namespace nad
