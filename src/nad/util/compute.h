#pragma once
#include <torch/torch.h>

#include <string>

namespace nad {

// Arithmetic of forward passes. bf16 runs convolutions and matrix products under autocast
// (weights stay fp32 and are updated in fp32); losses and attention maps are computed in fp32.
enum class Precision { kFp32, kBf16 };

Precision parse_precision(const std::string& text);  // UserError naming --precision
std::string precision_name(Precision precision);

// How a run computes, set once at start-up like the thread count.
struct ComputeOptions {
  Precision precision = Precision::kFp32;
  // 4-D tensors in N x H x W x C order: the images are stored that way already, and oneDNN's
  // convolutions are faster on it (measured: WRN-16-1 inference 1.2-1.3x in fp32 here).
  bool channels_last = true;
  // On CUDA, full training batches run as a captured CUDA graph (train/cuda_graph.h): measured on
  // an H200, 3.1x faster training with the same bf16 results to the last digit.
  bool cuda_graphs = true;
};

void set_compute_options(const ComputeOptions& options);
const ComputeOptions& compute_options();

// Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX); without it bf16 is emulated
// and slower than fp32.
bool cpu_has_native_bf16();

// Autocast for `device` while alive when the run's precision asks for it, as Python's
// torch.autocast: entering and leaving a scope clears the cache of cast weights, so each scope
// sees the current weights. Forward passes (and their losses) go inside; backward outside.
class AutocastScope {
 public:
  explicit AutocastScope(torch::Device device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
  torch::DeviceType device_type_ = torch::kCPU;
};

// A 4-D tensor in the run's memory format (channels-last or contiguous); others unchanged.
torch::Tensor to_memory_format(const torch::Tensor& tensor);

// Converts a module's 4-D parameters and buffers to the run's memory format in place.
void to_memory_format(torch::nn::Module& module);

}  // namespace nad
