#include "nad/dist/process_group.h"

#include <torch/csrc/distributed/c10d/Types.hpp>
#ifdef NAD_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef NAD_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/progress.h"

namespace nad::dist {
namespace {

struct State {
  bool initialised = false;
  LaunchEnvironment env;
  DistOptions options;
#ifdef NAD_WITH_GLOO
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef NAD_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
};

State& state() {
  static State s;
  return s;
}

int int_from_env(const char* name, int fallback, int min_value) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < min_value || value > 1 << 20) {
    throw UserError(std::string("environment variable ") + name + "='" + text +
                    "' is not a valid number (at least " + std::to_string(min_value) + ")");
  }
  return static_cast<int>(value);
}

// The first line of an exception's message, without LibTorch's backtrace.
std::string first_line(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  const size_t newline = text.find('\n');
  return newline == std::string::npos ? text : text.substr(0, newline);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

std::string seconds_text(std::chrono::milliseconds timeout) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g s", static_cast<double>(timeout.count()) / 1000.0);
  return buffer;
}

#ifdef NAD_WITH_GLOO
// Runs one collective and waits for it; a failure (a rank died, or the timeout passed) becomes
// one message that says what happened, instead of Gloo's internals.
// CUDA tensors go through NCCL where there is one; host tensors (counters, and everything in
// CPU runs) through Gloo.
template <class Op>
void run_collective(const char* what, bool on_cuda, Op op) {
  State& s = state();
  auto wait = [&](auto work) { work->wait(s.options.timeout); };
  try {
#ifdef NAD_WITH_NCCL
    if (s.nccl && on_cuda) {
      wait(op(*s.nccl));
      return;
    }
#else
    (void)on_cuda;
#endif
    wait(op(*s.gloo));
  } catch (const std::exception& e) {
    throw DistError("rank " + std::to_string(s.env.rank) + " of " +
                    std::to_string(s.env.world_size) + ": " + what +
                    " failed: another rank died or did not answer within " + flag::dist_timeout +
                    " " + seconds_text(s.options.timeout) + " (" + first_line(e) + ")");
  }
}

#else
template <class Op>
void run_collective(const char*, bool, Op) {
  throw std::logic_error("collective without a process group");  // init refuses world size > 1
}
#endif

}  // namespace

LaunchEnvironment read_launch_environment() {
  LaunchEnvironment env;
  env.world_size = int_from_env("WORLD_SIZE", 1, 1);
  env.rank = int_from_env("RANK", 0, 0);
  env.local_rank = int_from_env("LOCAL_RANK", env.rank, 0);
  if (env.rank >= env.world_size) {
    throw UserError("environment: RANK=" + std::to_string(env.rank) +
                    " must be below WORLD_SIZE=" + std::to_string(env.world_size));
  }
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) env.master_addr = addr;
  env.master_port = int_from_env("MASTER_PORT", 29500, 1);
  if (env.master_port > 65535) throw UserError("environment: MASTER_PORT must be below 65536");
  if (env.world_size > 1 && !std::getenv("MASTER_PORT")) {
    throw UserError("environment: WORLD_SIZE=" + std::to_string(env.world_size) +
                    " needs MASTER_ADDR and MASTER_PORT (the rendezvous address of rank 0)");
  }
  return env;
}

void init(const DistOptions& options, const torch::Device& device) {
  State& s = state();
  s.options = options;
  if (s.initialised) return;
  s.env = read_launch_environment();
  s.initialised = true;
  if (s.env.world_size == 1) return;
  if (options.timeout.count() <= 0) throw UserError(flag::dist_timeout + " must be positive");
#ifndef NAD_WITH_GLOO
  (void)device;
  throw UserError("WORLD_SIZE=" + std::to_string(s.env.world_size) +
                  ": this build of nad has no Gloo (install libgloo-dev and rebuild) and runs as "
                  "one process only");
#else

  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(s.env.master_port);
  store_options.isServer = s.env.rank == 0;
  store_options.numWorkers = s.env.world_size;
  store_options.waitWorkers = true;
  store_options.timeout = options.timeout;
  auto rendezvous_failed = [&](const std::exception& e) {
    return UserError("rank " + std::to_string(s.env.rank) + ": rendezvous at " + s.env.master_addr +
                     ":" + std::to_string(s.env.master_port) + " with " +
                     std::to_string(s.env.world_size) + " processes did not complete within " +
                     flag::dist_timeout + " " + seconds_text(options.timeout) + " (" +
                     first_line(e) + ")");
  };
  try {
    s.store = c10::make_intrusive<c10d::TCPStore>(s.env.master_addr, store_options);
  } catch (const std::exception& e) {
    throw rendezvous_failed(e);
  }
#ifdef NAD_WITH_NCCL
  if (device.is_cuda()) {
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = options.timeout;
    s.nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(s.store, s.env.rank, s.env.world_size,
                                                         nccl_options);
  }
#else
  (void)device;
#endif
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
  // One process per machine binds to its own address; on one machine the loopback is enough.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (is_loopback(s.env.master_addr)) {
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  gloo_options->threads = 2;
  try {
    s.gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(s.store, s.env.rank, s.env.world_size,
                                                         gloo_options);
  } catch (const std::exception& e) {
    throw rendezvous_failed(e);
  }
  // Only rank 0 writes files: the others compute the same things and would race on them.
  set_file_writes_enabled(s.env.rank == 0);
  set_progress_enabled(s.env.rank == 0);
#endif
}

int rank() { return state().env.rank; }
int world_size() { return state().env.world_size; }
bool is_distributed() { return state().env.world_size > 1; }
bool is_main() { return state().env.rank == 0; }
const DistOptions& options() { return state().options; }

torch::Device local_device(const torch::Device& requested) {
  if (!requested.is_cuda() || requested.has_index() || !is_distributed()) return requested;
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(state().env.local_rank));
}

void all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  if (!is_distributed() || tensors.empty()) return;
  for (auto& tensor : tensors) {
    run_collective("all-reduce", tensor.is_cuda(), [&](auto& group) {
      std::vector<torch::Tensor> one{tensor};
      return group.allreduce(one);
    });
  }
}

void all_reduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one{tensor};
  all_reduce_sum(one);
}

std::vector<double> all_reduce_sum(const std::vector<double>& values) {
  if (!is_distributed() || values.empty()) return values;
  torch::Tensor t = torch::tensor(values, torch::kDouble);
  all_reduce_sum(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void broadcast_from_main(std::vector<torch::Tensor>& tensors) {
  if (!is_distributed()) return;
  for (auto& tensor : tensors) {
    run_collective("broadcast", tensor.is_cuda(), [&](auto& group) {
      std::vector<torch::Tensor> one{tensor};
      c10d::BroadcastOptions broadcast;
      broadcast.rootRank = 0;
      return group.broadcast(one, broadcast);
    });
  }
}

void barrier() {
  if (!is_distributed()) return;
  run_collective("barrier", false, [&](auto& group) { return group.barrier(); });
}

std::pair<int64_t, int64_t> shard_range(int64_t count, int rank, int world_size) {
  const int64_t base = count / world_size, extra = count % world_size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

std::pair<int64_t, int64_t> local_shard(int64_t count) {
  return shard_range(count, rank(), world_size());
}

void average_gradients(const std::vector<torch::Tensor>& parameters, double local_weight,
                       int64_t bucket_bytes) {
  if (!is_distributed()) return;
  torch::NoGradGuard no_grad;
  // Parameters without a gradient (frozen, or unused this step) still take part, as zeros, so
  // that every rank issues the same collectives.
  std::vector<torch::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&]() {
    if (bucket.empty()) return;
    std::vector<torch::Tensor> flat_parts;
    for (const auto& p : bucket) {
      flat_parts.push_back(p.grad().defined()
                               ? p.grad().reshape(-1).to(torch::kFloat)
                               : torch::zeros({p.numel()}, p.options().dtype(torch::kFloat)));
    }
    torch::Tensor flat = torch::cat(flat_parts).mul_(local_weight);
    all_reduce_sum(flat);
    int64_t offset = 0;
    for (const auto& p : bucket) {
      torch::Tensor part = flat.slice(0, offset, offset + p.numel()).view_as(p).to(p.dtype());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(part);
      } else {
        p.mutable_grad() = part.clone();
      }
      offset += p.numel();
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& p : parameters) {
    if (!p.requires_grad()) continue;
    bucket.push_back(p);
    bytes += p.numel() * 4;
    if (bytes >= bucket_bytes) flush();
  }
  flush();
}

void broadcast_module(torch::nn::Module& module) {
  if (!is_distributed()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p.data());
  for (const auto& b : module.buffers()) tensors.push_back(b);
  broadcast_from_main(tensors);
  // The backend wrote the values without autograd's version counters seeing it; raise them, so
  // that what is derived from the weights and keyed on their version (the inference path's
  // folded convolutions) is made again.
  for (const auto& p : module.parameters()) p.unsafeGetTensorImpl()->bump_version();
  for (const auto& b : module.buffers()) b.unsafeGetTensorImpl()->bump_version();
}

namespace {
struct AllReduceSumFunction : public torch::autograd::Function<AllReduceSumFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, torch::Tensor input) {
    torch::Tensor out = input.clone();
    all_reduce_sum(out);
    return out;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext*,
                                               torch::autograd::tensor_list grads) {
    torch::Tensor grad = grads[0].contiguous().clone();
    all_reduce_sum(grad);
    return {grad};
  }
};
}  // namespace

torch::Tensor differentiable_all_reduce_sum(const torch::Tensor& tensor) {
  if (!is_distributed()) return tensor;
  return AllReduceSumFunction::apply(tensor);
}

}  // namespace nad::dist
