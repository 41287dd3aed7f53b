#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nad::dist {

// Data parallelism over PyTorch's c10d: N processes started with the torchrun environment
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; LOCAL_RANK picks the GPU) meet at a c10d
// TCPStore on rank 0 and form one process group: Gloo on the CPU, NCCL on CUDA devices where
// LibTorch was built with it. Without that environment nad runs as one process and every call
// below is a no-op, so single-process code paths pay nothing.

// A collective that failed: another rank died, or did not answer within the timeout.
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DistOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // --dist-timeout
  bool sync_batch_norm = false;                                  // --sync-bn
};

// What the environment asks for: world size 1 when WORLD_SIZE is unset. Throws UserError on
// inconsistent or malformed variables.
struct LaunchEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};
LaunchEnvironment read_launch_environment();

// Joins the process group the environment describes (once per process; later calls only
// update the options). `device` picks the backend. Errors (a rendezvous that does not complete
// within the timeout) are thrown as UserError naming the address.
void init(const DistOptions& options, const torch::Device& device);

int rank();
int world_size();
bool is_distributed();  // world size > 1
bool is_main();         // rank 0: the one process that prints and writes files
const DistOptions& options();
// With LOCAL_RANK: the CUDA device this process should use for `cuda`.
torch::Device local_device(const torch::Device& requested);

// Sums each tensor over all ranks, in place.
void all_reduce_sum(std::vector<torch::Tensor>& tensors);
void all_reduce_sum(torch::Tensor& tensor);
// Sums a few host counters (loss sums, correct counts) over all ranks.
std::vector<double> all_reduce_sum(const std::vector<double>& values);
// Copies rank 0's values into every rank's tensors, in place.
void broadcast_from_main(std::vector<torch::Tensor>& tensors);
void barrier();

// Rank r's contiguous part [begin, end) of `count` items: sizes differ by at most one.
std::pair<int64_t, int64_t> shard_range(int64_t count, int rank, int world_size);
std::pair<int64_t, int64_t> local_shard(int64_t count);

// After backward: each rank's gradients were taken of its shard's mean loss; multiplying by
// `local_weight` (the shard's share of the global batch) and summing over ranks gives the
// gradient of the global batch's mean loss, as one process would compute it. Gradients are
// flattened into buckets of about `bucket_bytes` so that a model costs a few collective calls,
// not one per parameter.
void average_gradients(const std::vector<torch::Tensor>& parameters, double local_weight,
                       int64_t bucket_bytes = 25 << 20);

// Makes every rank's parameters and buffers equal rank 0's (at the start of training, and for
// BatchNorm running statistics, which each rank updates from its own shard, before evaluation).
void broadcast_module(torch::nn::Module& module);

// A sum over ranks that autograd differentiates through (the backward pass sums the gradients
// over ranks as well): what synchronised BatchNorm needs for its batch statistics.
torch::Tensor differentiable_all_reduce_sum(const torch::Tensor& tensor);

}  // namespace nad::dist
