#pragma once
#include <string>

#include "nad/models/classifier.h"

// Feature Shift Tuning, FST (Min et al., NeurIPS 2023): finetuning that pushes the classifier
// away from the backdoored one, so that the features shift with it. As the authors' code
// (fine_tune/ft.py, --ft_mode fst): the linear classifier is re-initialised (weight and bias
// uniform in +-1/sqrt(in_features)); every parameter is then trained with cross-entropy plus
// alpha * <W, W_original> (the inner product with the original classifier weight), and after
// each step W is rescaled to the original weight's Frobenius norm.
namespace nad::defenses {

// The classifier layer's parameter path: the last 2-D weight with `num_classes` rows ("fc",
// "linear", a TorchScript model's head). A UserError when there is none.
std::string classifier_layer(const models::Classifier& model, int64_t num_classes);

// The classifier weight being trained, the original one and its norm.
struct FstHead {
  torch::Tensor weight;    // the model's own parameter (trained in place)
  torch::Tensor original;  // a copy of the weight before re-initialisation
  double original_norm = 0;
};

// Re-initialises `layer` (weight and bias) of `model` in place, drawing from `seed`.
FstHead reset_classifier(const models::Classifier& model, const std::string& layer, uint64_t seed);

// alpha * sum(W * W_original): the loss term that moves W away from the original weight.
torch::Tensor fst_penalty(const FstHead& head, double alpha);

// W <- W * ||W_original|| / ||W||, after each step.
void rescale_to_original_norm(const FstHead& head);

}  // namespace nad::defenses
