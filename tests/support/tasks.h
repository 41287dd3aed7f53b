#pragma once
#include <cstdint>

#include "nad/data/dataset.h"

namespace nad::test {

// Two classes of 8 x 8 one-channel images told apart by brightness (dark 40-79, bright
// 190-229), alternating labels; a few epochs of mnist-cnn learn it. Uses torch's global seed.
data::Dataset brightness_task(int64_t n);

}  // namespace nad::test
