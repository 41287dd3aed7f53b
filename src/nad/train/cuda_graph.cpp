#include "nad/train/cuda_graph.h"

#include <torch/version.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#ifdef NAD_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace nad::train {

namespace {
std::atomic<int64_t> replay_count{0};
}  // namespace

#ifdef NAD_WITH_CUDA

bool cuda_graphs_supported() { return true; }

struct CapturedWork::Graph {
  at::cuda::CUDAGraph graph;
};

void CapturedWork::capture(const std::function<torch::Tensor()>& work) {
  reset();
  auto graph = std::make_unique<Graph>();
  // Debug hook: NAD_CUDA_GRAPH_DUMP=FILE writes the first captured graph (its nodes) as DOT.
  static bool dumped = false;
  const char* dump = std::getenv("NAD_CUDA_GRAPH_DUMP");
  const bool dump_this = dump != nullptr && *dump != '\0' && !dumped;
#if TORCH_VERSION_MAJOR >= 2
  if (dump_this) graph->graph.enable_debug_mode();
#endif
  graph->graph.capture_begin();
  torch::Tensor output;
  try {
    output = work();
  } catch (...) {
    try {
      graph->graph.capture_end();
    } catch (...) {
      // The capture was already invalid; the first error is the one to report.
    }
    throw;
  }
  graph->graph.capture_end();
#if TORCH_VERSION_MAJOR >= 2
  if (dump_this) {
    graph->graph.debug_dump(dump);
    dumped = true;
  }
#endif
  graph_ = std::move(graph);
  output_ = output;
}

const torch::Tensor& CapturedWork::replay() {
  if (!graph_) throw std::logic_error("CapturedWork::replay before capture");
  graph_->graph.replay();
  ++replay_count;
  return output_;
}

struct OwnCudaStream::Guard {
  explicit Guard(torch::Device device)
      : stream(c10::cuda::getStreamFromPool(false, device.index())), guard(stream) {}
  c10::cuda::CUDAStream stream;
  c10::cuda::CUDAStreamGuard guard;
};

OwnCudaStream::OwnCudaStream(torch::Device device) {
  if (!device.is_cuda()) return;
  c10::cuda::device_synchronize();
  guard_ = std::make_unique<Guard>(device);
}

OwnCudaStream::~OwnCudaStream() {
  if (!guard_) return;
  try {
    guard_->stream.synchronize();
  } catch (...) {
    // Leaving after a CUDA error: the error that ended the run is the one to report.
  }
}

#else

bool cuda_graphs_supported() { return false; }

struct CapturedWork::Graph {};

void CapturedWork::capture(const std::function<torch::Tensor()>&) {
  throw std::runtime_error("this build of nad has no CUDA graphs (LibTorch without CUDA)");
}

const torch::Tensor& CapturedWork::replay() {
  throw std::logic_error("CapturedWork::replay before capture");
}

struct OwnCudaStream::Guard {};

OwnCudaStream::OwnCudaStream(torch::Device) {}

OwnCudaStream::~OwnCudaStream() = default;

#endif

CapturedWork::CapturedWork() = default;
CapturedWork::~CapturedWork() = default;

int64_t CapturedWork::total_replays() { return replay_count; }

bool CapturedWork::captured() const { return graph_ != nullptr; }

void CapturedWork::reset() {
#ifdef NAD_WITH_CUDA
  // Replays still queued use the graph's memory, which its destruction hands back.
  if (graph_) c10::cuda::getCurrentCUDAStream().synchronize();
#endif
  graph_.reset();
  output_ = torch::Tensor();
}

}  // namespace nad::train
