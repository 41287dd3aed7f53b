#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nad/defenses/clean_subset.h"
#include "nad/models/classifier.h"
#include "nad/models/layers.h"
#include "nad/train/trainer.h"

// Adversarial Neuron Pruning, ANP (Wu & Wang, NeurIPS 2021). Every BatchNorm neuron (channel) k
// gets a mask m_k in [0, 1] on its weight; on clean data the masks are learnt so that the model
// stays right both as it is and under the worst multiplicative perturbation of its neurons:
//   weight_k * (m_k + d_k), bias_k * (1 + e_k), |d_k|, |e_k| <= eps (start: uniform in +-eps,
//   then `steps` signed-gradient steps of eps / steps that raise the loss),
//   loss = alpha * CE(masked model) + (1 - alpha) * CE(masked and perturbed model).
// Neurons a backdoor needs are the ones whose perturbation breaks the model most, so their masks
// fall; those at or below a threshold (or the lowest fraction) are pruned in the original model.
//
// As the authors' code does (optimize_mask_cifar.py, prune_neuron_cifar.py), where it is more
// specific than the paper: the masks are learnt in training mode (batch statistics; the working
// copy's running statistics move, the pruned model keeps the original's), with SGD at 0.2,
// momentum 0.9, batches of 128 drawn with replacement from the clean subset with random crop and
// flip; the perturbation is not clipped after its step; pruning zeroes the neuron's BatchNorm
// weight only (its bias stays).
namespace nad::defenses {

enum class AnpPruneBy { kThreshold, kFraction };

struct AnpOptions {
  double eps = 0.4;    // bound of the neuron perturbations
  int steps = 1;       // signed-gradient steps of the perturbation per batch
  double alpha = 0.2;  // weight of the unperturbed loss
  int64_t iterations = 2000;
  int rounds = 4;  // measured (and saved, for --resume) after each of this many equal parts
  int64_t batch_size = 128;
  double mask_lr = 0.2;
  double momentum = 0.9;
  AnpPruneBy prune_by = AnpPruneBy::kThreshold;
  double threshold = 0.2;  // prune masks <= threshold
  double fraction = 0.05;  // or the lowest fraction of all neurons
  data::AugmentOptions augment;
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  bool quiet = false;
  std::shared_ptr<const train::StateStore> state;  // resumable when set
  std::string state_key = "anp";
};

// Throws UserError naming the option of the first value out of range.
void check_anp_options(const AnpOptions& options);
AnpPruneBy parse_anp_prune_by(const std::string& name);
std::string anp_prune_by_name(AnpPruneBy by);

// The masks and perturbations of every affine BatchNorm of a model, applied through
// BatchNormAffineOverride (the model's registered parameters are never written).
class AnpNeurons {
 public:
  explicit AnpNeurons(const models::Classifier& model);
  const std::vector<std::string>& layers() const { return layers_; }
  // One per layer: leaf tensors (requiring grad) in [0, 1], starting at 1.
  std::vector<torch::Tensor>& masks() { return masks_; }
  int64_t count() const;
  // The perturbations: uniform in +-eps from `generator`, or zero.
  void randomise_perturbation(double eps, at::Generator& generator);
  // Forward reads weight * (mask + d), bias * (1 + e) (perturbed) or weight * mask, bias.
  // With `track_perturbation`, the perturbations take gradients (for their own step).
  void apply(bool perturbed, bool track_perturbation = false);
  // weight * mask, bias, as constants: for measuring the masked model (a TorchScript model given
  // tensors that require grad builds a differentiable graph, which inference mode refuses).
  void apply_for_evaluation();
  // d, e += step * sign(d loss / d d, e): the step that raises `loss`, which must come from a
  // forward after apply(true, true).
  void ascend_perturbation(const torch::Tensor& loss, double step);
  void clamp_masks();

 private:
  std::vector<std::string> layers_;
  std::vector<std::unique_ptr<models::BatchNormAffineOverride>> overrides_;
  std::vector<torch::Tensor> masks_, weight_noise_, bias_noise_;
  // Copies of the BatchNorm weights and biases (a TorchScript model's may be inference tensors,
  // which autograd cannot save).
  std::vector<torch::Tensor> weights_, biases_;
};

// One mask update on a batch (the authors' mask_train body): the perturbation's steps, then
// alpha * clean loss + (1 - alpha) * perturbed loss, backward, `optimizer` (over the masks) steps
// and the masks are clamped to [0, 1]. Returns the clean logits (detached) and the loss.
struct AnpStep {
  torch::Tensor logits;
  double loss = 0;
};
AnpStep anp_step(const models::Classifier& model, AnpNeurons& neurons, torch::optim::SGD& optimizer,
                 const torch::Tensor& inputs, const torch::Tensor& targets,
                 const AnpOptions& options, at::Generator& generator);

struct AnpMaskResult {
  std::vector<std::string> layers;
  std::vector<torch::Tensor> masks;  // float CPU, one per layer
  std::vector<train::EpochRecord> records;
};

// Learns the masks on a working copy of `model` (never `model` itself). `evaluate`, when set,
// measures the masked copy after each round (as the authors print clean and poisoned accuracy).
AnpMaskResult learn_anp_masks(
    const models::Classifier& model, const models::ModelSpec& spec, const data::Dataset& clean,
    const AnpOptions& options,
    const std::function<train::Metrics(const models::Classifier&)>& evaluate = nullptr);

struct AnpPruned {
  models::Classifier model;
  // Per layer, the pruned channels.
  std::vector<std::vector<int64_t>> pruned;
  int64_t count = 0;
  double threshold = 0;  // the mask value at or below which neurons were pruned
};

// A copy of `model` with the BatchNorm weight of the chosen neurons set to zero.
AnpPruned anp_prune(const models::Classifier& model, const models::ModelSpec& spec,
                    const std::vector<std::string>& layers, const std::vector<torch::Tensor>& masks,
                    const AnpOptions& options);

}  // namespace nad::defenses
