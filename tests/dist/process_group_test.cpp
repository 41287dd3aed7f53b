// The single-process parts of data parallelism: shards, and synchronised BatchNorm's formula
// (with one rank it must be LibTorch's own batch norm, values, gradients and running stats).
#include <gtest/gtest.h>

#include "nad/dist/process_group.h"
#include "nad/models/batch_norm.h"

namespace nad::test {
namespace {

using Range = std::pair<int64_t, int64_t>;

TEST(Shards, CoverEveryRowOnceWithSizesWithinOne) {
  EXPECT_EQ(dist::shard_range(10, 0, 3), Range(0, 4));
  EXPECT_EQ(dist::shard_range(10, 1, 3), Range(4, 7));
  EXPECT_EQ(dist::shard_range(10, 2, 3), Range(7, 10));
  EXPECT_EQ(dist::shard_range(64, 1, 2), Range(32, 64));
  EXPECT_EQ(dist::shard_range(1, 1, 2), Range(1, 1));
  // Outside a distributed run the local shard is everything.
  EXPECT_EQ(dist::local_shard(7), Range(0, 7));
  EXPECT_FALSE(dist::is_distributed());
}

TEST(SyncBatchNorm, OneRankEqualsLibTorchBatchNorm) {
  torch::manual_seed(3);
  models::BatchNorm2d reference(5), synced(5);
  torch::NoGradGuard no_grad_init;
  reference->weight.uniform_(0.5, 1.5);
  reference->bias.uniform_(-0.5, 0.5);
  synced->weight.copy_(reference->weight);
  synced->bias.copy_(reference->bias);
  torch::Tensor input = torch::randn({6, 5, 4, 3}) * 2 + 1;
  for (int step = 0; step < 2; ++step) {  // twice: the running statistics accumulate
    torch::Tensor a = input.clone().requires_grad_(true);
    torch::Tensor b = input.clone().requires_grad_(true);
    torch::Tensor ya, yb;
    {
      torch::AutoGradMode grad(true);
      ya = reference->forward(a);
      yb = models::synchronised_batch_norm(b, *synced);
      const torch::Tensor weights = torch::linspace(-1, 1, ya.numel()).view_as(ya);
      (ya * weights).sum().backward();
      (yb * weights).sum().backward();
    }
    EXPECT_TRUE(torch::allclose(ya, yb, 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(a.grad(), b.grad(), 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(reference->weight.grad(), synced->weight.grad(), 1e-4, 1e-5));
    EXPECT_TRUE(torch::allclose(reference->bias.grad(), synced->bias.grad(), 1e-4, 1e-5));
    EXPECT_TRUE(torch::allclose(reference->running_mean, synced->running_mean, 1e-6, 1e-6));
    EXPECT_TRUE(torch::allclose(reference->running_var, synced->running_var, 1e-5, 1e-6));
    EXPECT_EQ(reference->num_batches_tracked.item<int64_t>(),
              synced->num_batches_tracked.item<int64_t>());
    reference->weight.mutable_grad().zero_();
    reference->bias.mutable_grad().zero_();
    synced->weight.mutable_grad().zero_();
    synced->bias.mutable_grad().zero_();
  }
}

}  // namespace
}  // namespace nad::test
