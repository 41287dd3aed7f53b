#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

namespace nad::train {

// Whether this build of nad can capture CUDA graphs (built against a LibTorch with CUDA).
bool cuda_graphs_supported();

// A fixed-shape piece of GPU work (a whole training step: forward, backward, optimiser) captured
// once as a CUDA graph and then launched as one unit. WRN-16-1's step is several hundred small
// kernels whose launches cost more than their arithmetic; replaying a graph launches them all
// from the GPU side. The captured work must read its inputs from tensors that keep their place
// (the caller copies each batch into them) and must not wait for the device.
class CapturedWork {
 public:
  CapturedWork();
  ~CapturedWork();
  CapturedWork(const CapturedWork&) = delete;
  CapturedWork& operator=(const CapturedWork&) = delete;

  // Records `work` (nothing runs yet) and keeps the tensor it returns, which each replay
  // rewrites. Throws when capture fails (the work waited for the device, say); nothing is kept.
  void capture(const std::function<torch::Tensor()>& work);
  bool captured() const;
  // Runs the recorded work on the current stream; returns the tensor `capture` kept.
  const torch::Tensor& replay();
  void reset();

  // Replays by all CapturedWork in this process (tests and benchmarks check graphs were used).
  static int64_t total_replays();

 private:
  struct Graph;
  std::unique_ptr<Graph> graph_;
  torch::Tensor output_;
};

// While alive, CUDA work of `device` goes to a stream of its own (graphs cannot be captured on
// the default stream); the device is synchronised on entry and exit, so work on other streams
// before and after sees this work complete. Does nothing for other devices or without CUDA.
class OwnCudaStream {
 public:
  explicit OwnCudaStream(torch::Device device);
  ~OwnCudaStream();
  OwnCudaStream(const OwnCudaStream&) = delete;
  OwnCudaStream& operator=(const OwnCudaStream&) = delete;

 private:
  struct Guard;
  std::unique_ptr<Guard> guard_;
};

}  // namespace nad::train
