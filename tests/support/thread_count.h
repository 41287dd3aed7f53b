#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace nad {
// Base of tests that change LibTorch's thread count: puts back the count the test started
// with, so that later tests run as configured.
class KeepsThreadCount : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = at::get_num_threads(); }
  void TearDown() override { at::set_num_threads(saved_); }

 private:
  int saved_ = 1;
};
}  // namespace nad
