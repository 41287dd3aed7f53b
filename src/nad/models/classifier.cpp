#include "nad/models/classifier.h"

#include "nad/models/registry.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::models {

ModelOutput ClassifierImpl::forward(const torch::Tensor& inputs) {
  if (input_norm_.identity()) return forward_normalised(inputs);
  if (!norm_mean_.defined() || norm_mean_.device() != inputs.device() ||
      norm_mean_.scalar_type() != inputs.scalar_type()) {
    const auto options = torch::TensorOptions().dtype(torch::kDouble);
    const int64_t channels = static_cast<int64_t>(input_norm_.mean.size());
    norm_mean_ = torch::tensor(input_norm_.mean, options)
                     .view({1, channels, 1, 1})
                     .to(inputs.device(), inputs.scalar_type());
    norm_std_ = torch::tensor(input_norm_.std, options)
                    .view({1, channels, 1, 1})
                    .to(inputs.device(), inputs.scalar_type());
  }
  // As torchvision's Normalize computes it, so that logits match a PyTorch pipeline's.
  return forward_normalised((inputs - norm_mean_) / norm_std_);
}

void ClassifierImpl::set_input_norm(const InputNorm& norm, int64_t in_channels) {
  if (!norm.identity() && static_cast<int64_t>(norm.mean.size()) != in_channels) {
    throw UserError("the input normalisation " + norm.describe() + " has " +
                    std::to_string(norm.mean.size()) + " channels, but the model's inputs have " +
                    std::to_string(in_channels) + " (" + flag::input_norm + ")");
  }
  input_norm_ = norm;
  norm_mean_ = norm_std_ = torch::Tensor();
}

std::vector<std::string> arch_names() {
  std::vector<std::string> names;
  for (const ArchFamily& family : arch_families()) {
    names.insert(names.end(), family.names.begin(), family.names.end());
  }
  return names;
}

namespace {
Classifier build_model(const ModelSpec& spec) {
  if (spec.in_channels <= 0 || spec.num_classes <= 1 || spec.height <= 0 || spec.width <= 0) {
    throw UserError("invalid model shape for '" + spec.arch + "'");
  }
  if (const ArchFamily* family = find_family(spec.arch)) return family->build(spec);
  std::string names;
  for (const std::string& name : arch_names()) names += (names.empty() ? "" : ", ") + name;
  throw UserError("unknown " + flag::arch + " '" + spec.arch + "' (choose " + names + ")");
}
}  // namespace

Classifier create_model(const ModelSpec& spec) {
  Classifier model = build_model(spec);
  model->set_input_norm(spec.input_norm, spec.in_channels);
  // Weights are later filled with copy_, which keeps this layout.
  to_memory_format(*model);
  return model;
}

void copy_weights(const Classifier& source, const Classifier& target) {
  torch::NoGradGuard no_grad;
  auto src_params = source->named_parameters();
  for (auto& item : target->named_parameters()) item.value().copy_(src_params[item.key()]);
  auto src_buffers = source->named_buffers();
  for (auto& item : target->named_buffers()) item.value().copy_(src_buffers[item.key()]);
}

Classifier clone_model(const Classifier& model, const ModelSpec& spec) {
  Classifier copy = create_model(spec);
  const auto device = model->parameters().front().device();
  copy->to(device);
  copy_weights(model, copy);
  copy->set_input_norm(model->input_norm(), spec.in_channels);
  copy->train(model->is_training());
  return copy;
}

void check_arch(const std::string& arch) {
  // Building one is cheap next to any run, and keeps a single list of what is accepted.
  create_model({arch, 3, 2, 32, 32});
}

}  // namespace nad::models
