#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

// GPU tests: their suite names end in "Cuda" (run them alone with `make test-gpu`, i.e.
// `nad_tests --gtest_filter='*Cuda*'`); without a CUDA device they are skipped.
#define NAD_REQUIRE_CUDA()                                                   \
  do {                                                                       \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a CUDA device"; \
  } while (0)
