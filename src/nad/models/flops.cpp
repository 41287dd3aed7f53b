#include "nad/models/flops.h"

#include <ATen/record_function.h>

#include <cstring>

namespace nad::models {

namespace {

// RecordFunction takes plain function pointers, so the counts of the one measurement running on
// this thread live here.
thread_local ForwardCost* current_cost = nullptr;

std::vector<int64_t> int_list(const c10::IValue& value) {
  if (value.isIntList()) return value.toIntVector();
  return {};
}

int64_t at_or(const std::vector<int64_t>& values, size_t i, int64_t fallback) {
  if (values.empty()) return fallback;
  return i < values.size() ? values[i] : values.back();
}

void count_convolution(const at::RecordFunction& fn) {
  const auto inputs = fn.inputs();
  // aten::convolution(input, weight, bias, stride, padding, dilation, transposed,
  //                   output_padding, groups)
  if (inputs.size() < 9 || !inputs[0].isTensor() || !inputs[1].isTensor()) return;
  const at::Tensor& input = inputs[0].toTensor();
  const at::Tensor& weight = inputs[1].toTensor();
  if (input.dim() != 4 || weight.dim() != 4) return;
  if (inputs[6].isBool() && inputs[6].toBool()) return;  // transposed: not used by nad's models
  ConvolutionCall call;
  call.input = input.sizes().vec();
  call.weight = weight.sizes().vec();
  call.stride = int_list(inputs[3]);
  call.padding = int_list(inputs[4]);
  call.dilation = int_list(inputs[5]);
  call.groups = inputs[8].isInt() ? inputs[8].toInt() : 1;
  int64_t positions = 1;
  for (size_t d = 0; d < 2; ++d) {
    const int64_t size = call.input[2 + d];
    const int64_t kernel = call.weight[2 + d];
    const int64_t out =
        (size + 2 * at_or(call.padding, d, 0) - at_or(call.dilation, d, 1) * (kernel - 1) - 1) /
            at_or(call.stride, d, 1) +
        1;
    positions *= out;
  }
  const double macs_per_output =
      static_cast<double>(call.weight[1] * call.weight[2] * call.weight[3]);
  call.flops = 2.0 * macs_per_output * static_cast<double>(call.input[0] * call.weight[0]) *
               static_cast<double>(positions);
  current_cost->convolution_flops += call.flops;
  current_cost->convolutions.push_back(std::move(call));
}

// Matrix products: aten::linear(input, weight, bias) where the frontend has it; LibTorch's
// C++ Linear calls addmm(bias, input, weight^T) or matmul(input, weight^T) directly. Products
// nested inside one already counted (linear -> addmm, matmul -> mm) are skipped.
thread_local int product_depth = 0;

struct ProductMarker : at::ObserverContext {};

double product_flops(const at::Tensor& a, const at::Tensor& b) {
  // a: [..., M, K], b: [K, N] -> 2 x (a's rows) x K x N.
  if (a.dim() < 1 || b.dim() != 2) return 0;
  const double rows = static_cast<double>(a.numel() / std::max<int64_t>(1, a.size(-1)));
  return 2.0 * rows * static_cast<double>(b.size(0) * b.size(1));
}

std::unique_ptr<at::ObserverContext> count_product(const at::RecordFunction& fn, const char* name) {
  const auto inputs = fn.inputs();
  auto tensor = [&](size_t i) -> const at::Tensor* {
    return i < inputs.size() && inputs[i].isTensor() ? &inputs[i].toTensor() : nullptr;
  };
  if (product_depth == 0) {
    double flops = 0;
    if (std::strcmp(name, "aten::linear") == 0) {
      if (tensor(0) && tensor(1)) flops = product_flops(*tensor(0), tensor(1)->t());
    } else if (std::strcmp(name, "aten::addmm") == 0) {
      if (tensor(1) && tensor(2)) flops = product_flops(*tensor(1), *tensor(2));
    } else if (tensor(0) && tensor(1)) {  // mm, matmul
      flops = product_flops(*tensor(0), *tensor(1));
    }
    current_cost->linear_flops += flops;
  }
  ++product_depth;
  return std::make_unique<ProductMarker>();
}

std::unique_ptr<at::ObserverContext> on_operator_start(const at::RecordFunction& fn) {
  if (!current_cost) return nullptr;
  const char* name = fn.name();
  if (std::strcmp(name, "aten::convolution") == 0) {
    count_convolution(fn);
  } else if (std::strcmp(name, "aten::linear") == 0 || std::strcmp(name, "aten::addmm") == 0 ||
             std::strcmp(name, "aten::matmul") == 0 || std::strcmp(name, "aten::mm") == 0) {
    return count_product(fn, name);
  }
  return nullptr;
}

void on_operator_end(const at::RecordFunction& /*fn*/, at::ObserverContext* context) {
  if (dynamic_cast<ProductMarker*>(context)) --product_depth;
}

}  // namespace

bool ConvolutionCall::same_shape(const ConvolutionCall& other) const {
  return input == other.input && weight == other.weight && stride == other.stride &&
         padding == other.padding && dilation == other.dilation && groups == other.groups;
}

ForwardCost measure_forward_cost(const Classifier& model, const torch::Tensor& inputs) {
  ForwardCost cost;
  const bool was_training = model->is_training();
  model->eval();
  current_cost = &cost;
  product_depth = 0;
  at::CallbackHandle handle =
      at::addThreadLocalCallback(at::RecordFunctionCallback(on_operator_start, on_operator_end)
                                     .needsInputs(true)
                                     .scopes({at::RecordScope::FUNCTION}));
  try {
    torch::NoGradGuard no_grad;
    model->forward(inputs);
  } catch (...) {
    at::removeCallback(handle);
    current_cost = nullptr;
    model->train(was_training);
    throw;
  }
  at::removeCallback(handle);
  current_cost = nullptr;
  model->train(was_training);
  return cost;
}

}  // namespace nad::models
