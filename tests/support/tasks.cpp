#include "support/tasks.h"

namespace nad::test {

data::Dataset brightness_task(int64_t n) {
  torch::Tensor labels = torch::arange(n, torch::kLong).remainder(2);
  torch::Tensor images =
      (labels.view({n, 1, 1, 1}) * 150 + 40 + torch::randint(0, 40, {n, 8, 8, 1}, torch::kLong))
          .to(torch::kUInt8);
  return {images, labels};
}

}  // namespace nad::test
