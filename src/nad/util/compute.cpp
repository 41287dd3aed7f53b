#include "nad/util/compute.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <fstream>

#include "nad/util/error.h"
#include "nad/util/flags.h"

// LibTorch 2.4 replaced the per-device autocast functions with ones taking the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define NAD_AUTOCAST_BY_DEVICE_TYPE 1
#else
#define NAD_AUTOCAST_BY_DEVICE_TYPE 0
#endif

namespace nad {

namespace {
ComputeOptions& global_options() {
  static ComputeOptions options;
  return options;
}

bool autocast_enabled(torch::DeviceType type) {
#if NAD_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(torch::DeviceType type, bool enabled) {
#if NAD_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == torch::kCUDA) {
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

at::ScalarType autocast_dtype(torch::DeviceType type) {
#if NAD_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                              : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(torch::DeviceType type, at::ScalarType dtype) {
#if NAD_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == torch::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}
}  // namespace

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::kFp32;
  if (text == "bf16") return Precision::kBf16;
  throw UserError(flag::precision + " must be fp32 or bf16, not '" + text + "'");
}

std::string precision_name(Precision precision) {
  return precision == Precision::kBf16 ? "bf16" : "fp32";
}

void set_compute_options(const ComputeOptions& options) { global_options() = options; }

const ComputeOptions& compute_options() { return global_options(); }

bool cpu_has_native_bf16() {
  static const bool has = [] {
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);) {
      if (line.rfind("flags", 0) != 0) continue;
      return line.find(" avx512_bf16") != std::string::npos ||
             line.find(" amx_bf16") != std::string::npos;
    }
    return false;
  }();
  return has;
}

AutocastScope::AutocastScope(torch::Device device) : device_type_(device.type()) {
  if (global_options().precision != Precision::kBf16) return;
  active_ = true;
  previous_enabled_ = autocast_enabled(device_type_);
  previous_dtype_ = autocast_dtype(device_type_);
  set_autocast_enabled(device_type_, true);
  set_autocast_dtype(device_type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_type_, previous_enabled_);
  set_autocast_dtype(device_type_, previous_dtype_);
}

torch::Tensor to_memory_format(const torch::Tensor& tensor) {
  if (tensor.dim() != 4) return tensor;
  return global_options().channels_last ? tensor.contiguous(at::MemoryFormat::ChannelsLast)
                                        : tensor.contiguous();
}

void to_memory_format(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : module.parameters()) {
    if (parameter.dim() == 4) parameter.set_data(to_memory_format(parameter.data()));
  }
  for (auto& buffer : module.buffers()) {
    if (buffer.dim() == 4) buffer.set_data(to_memory_format(buffer.data()));
  }
}

}  // namespace nad
