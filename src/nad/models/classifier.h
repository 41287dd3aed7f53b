#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nad/models/input_norm.h"

namespace nad::models {

// What every model's forward returns: the residual-group outputs used for attention
// distillation, and the logits. Returning the features directly means NAD needs no hooks.
struct ModelOutput {
  std::vector<torch::Tensor> features;
  torch::Tensor logits;
};

// The shape facts a model is built from; they come from the dataset or a checkpoint.
struct ModelSpec {
  ModelSpec() = default;
  ModelSpec(std::string arch, int64_t in_channels, int64_t num_classes, int64_t height,
            int64_t width, InputNorm input_norm = {})
      : arch(std::move(arch)),
        in_channels(in_channels),
        num_classes(num_classes),
        height(height),
        width(width),
        input_norm(std::move(input_norm)) {}

  std::string arch;  // a name of the architecture registry (registry.h)
  int64_t in_channels = 3;
  int64_t num_classes = 10;
  int64_t height = 32;
  int64_t width = 32;
  InputNorm input_norm;  // applied to the [0, 1] inputs before the first layer
  // Attention groups by stage name, for the families that can choose them (torchvision's);
  // empty: the family's default. Other families keep their fixed groups.
  std::vector<std::string> groups;
};

// Base of every classifier: a torch module whose forward maps N x C x H x W float inputs in
// [0, 1] to group features and logits. Triggers, augmentation, attacks and scans all work on
// [0, 1] images; the model's own input normalisation happens inside forward.
class ClassifierImpl : public torch::nn::Module {
 public:
  ModelOutput forward(const torch::Tensor& inputs);
  // The network itself, on normalised inputs.
  virtual ModelOutput forward_normalised(const torch::Tensor& inputs) = 0;
  const InputNorm& input_norm() const { return input_norm_; }
  // Throws UserError when the normalisation's channel count is not the model's input's.
  void set_input_norm(const InputNorm& norm, int64_t in_channels);
  // Names of the group outputs, in the order of ModelOutput::features.
  virtual std::vector<std::string> group_names() const = 0;
  // What defenses and attacks need to know of a model beyond this interface (NAD's betas,
  // TrojanNN's consumers) is in its family's registry entry (registry.h).

 private:
  InputNorm input_norm_;
  // mean and std as N x C x 1 x 1 tensors on the last input's device and dtype; made once, so
  // that a captured CUDA graph replays no host-to-device copy.
  torch::Tensor norm_mean_, norm_std_;
};
using Classifier = std::shared_ptr<ClassifierImpl>;

// Names accepted by create_model (wrn-D-K stands for any depth and width), from the registry.
std::vector<std::string> arch_names();

// Builds a freshly initialised model; throws UserError on an unknown or malformed arch.
Classifier create_model(const ModelSpec& spec);
// Throws the same UserError for an unknown or malformed architecture name, before any data is
// loaded.
void check_arch(const std::string& arch);

// Copies every parameter and buffer of `source` into `target` (same architecture).
void copy_weights(const Classifier& source, const Classifier& target);

// A deep copy made by building the same architecture and copying weights.
Classifier clone_model(const Classifier& model, const ModelSpec& spec);

}  // namespace nad::models
