#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nad/data/dataset.h"
#include "nad/models/classifier.h"
#include "nad/train/trainer.h"

// Implicit Backdoor Adversarial Unlearning, I-BAU (Zeng et al., ICLR 2022): a minimax game on
// the clean subset. The inner player finds one universal perturbation that makes the model
// change its own predictions; the outer player (the model) then learns to classify correctly
// despite it. The outer gradient goes through the inner solution by the implicit hypergradient:
// with the inner fixed-point map w' = w - inner_lr * d(inner loss)/dw, K steps of
// v <- (dw'/dw)^T v + dL_outer/dw give the linear system's solution, and the model's gradient is
// (dw'/dtheta)^T v + dL_outer/dtheta.
//
// As the authors' code does (defense.py, hypergrad's fixed_point), where it is more specific than
// the paper: each round starts the perturbation at zero and takes one SGD step (rate 10) per
// clean batch on -CE(model(x + p), model's own labels) + 0.001 ||p||^2, then projects it into
// the L2 ball of radius 10; the inner loss of the fixed-point map is that of the first batch with
// its true labels; the outer loss adds the perturbation to 1% of each batch (at least one image
// is not guaranteed: int(0.01 * batch)); the model is in evaluation mode throughout, trained with
// Adam at 0.001, batches of 100, 5 rounds, K = 5.
namespace nad::defenses {

struct IbauOptions {
  int rounds = 5;
  int fixed_point_steps = 5;  // K
  int64_t batch_size = 100;
  double lr = 0.001;                  // Adam, the model
  double inner_lr = 0.1;              // the fixed-point map's gradient step
  double perturbation_lr = 10;        // SGD of the universal perturbation
  double perturbation_decay = 0.001;  // weight of ||p||^2 in the inner loss
  double perturbation_radius = 10;    // L2 ball the perturbation is projected into
  double portion = 0.01;              // share of each outer batch that carries the perturbation
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  bool quiet = false;
  std::shared_ptr<const train::StateStore> state;  // resumable (by round) when set
  std::string state_key = "ibau";
};

// Throws UserError naming the option of the first value out of range.
void check_ibau_options(const IbauOptions& options);

// The implicit hypergradient of one outer step, for `parameters` (the model's, which must
// require grad): `outer_loss(w)` and `inner_loss(w)` are the two players' losses as functions of
// the perturbation w (a leaf the function creates from `perturbation`), K fixed-point steps.
// Returns the gradients in the order of `parameters` (zero where unused) and sets nothing.
std::vector<torch::Tensor> implicit_hypergradient(
    const std::vector<torch::Tensor>& parameters, const torch::Tensor& perturbation,
    const std::function<torch::Tensor(const torch::Tensor&)>& outer_loss,
    const std::function<torch::Tensor(const torch::Tensor&)>& inner_loss, double inner_lr,
    int steps);

struct IbauResult {
  models::Classifier model;
  std::vector<train::EpochRecord> records;
  std::vector<double> perturbation_norms;  // per round, after projection
};

// Unlearns on a copy of `model`; `evaluate`, when set, measures it after each round.
IbauResult ibau_unlearn(
    const models::Classifier& model, const models::ModelSpec& spec, const data::Dataset& clean,
    const IbauOptions& options,
    const std::function<train::Metrics(const models::Classifier&)>& evaluate = nullptr);

}  // namespace nad::defenses
