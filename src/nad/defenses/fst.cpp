#include "nad/defenses/fst.h"

#include <cmath>

#include "nad/models/layers.h"
#include "nad/util/error.h"

namespace nad::defenses {

std::string classifier_layer(const models::Classifier& model, int64_t num_classes) {
  std::string layer;
  const auto parameters = model->named_parameters();
  for (const auto& item : models::weighted_layers(model)) {
    if (item.kind == models::LayerKind::kLinear &&
        parameters[item.path + ".weight"].size(0) == num_classes) {
      layer = item.path;
    }
  }
  if (layer.empty()) {
    throw UserError("FST needs a linear classifier with one row per class (" +
                    std::to_string(num_classes) + "); the model has none");
  }
  return layer;
}

FstHead reset_classifier(const models::Classifier& model, const std::string& layer, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto parameters = model->named_parameters();
  torch::Tensor* weight = parameters.find(layer + ".weight");
  if (weight == nullptr) throw UserError("no classifier weight " + layer + ".weight");
  FstHead head;
  head.weight = *weight;
  head.original = weight->detach().clone();
  head.original_norm = head.original.to(torch::kDouble).norm().item<double>();
  // The authors draw the bias from the weight's range too.
  const double bound = 1.0 / std::sqrt(static_cast<double>(weight->size(-1)));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto draw = [&](torch::Tensor& target) {
    torch::Tensor values = torch::empty(target.sizes(), torch::kFloat);
    values.uniform_(-bound, bound, generator);
    target.copy_(values);
  };
  draw(*weight);
  if (torch::Tensor* bias = parameters.find(layer + ".bias")) draw(*bias);
  return head;
}

torch::Tensor fst_penalty(const FstHead& head, double alpha) {
  return alpha *
         (head.weight.to(torch::kFloat) * head.original.to(head.weight.device(), torch::kFloat))
             .sum();
}

void rescale_to_original_norm(const FstHead& head) {
  torch::NoGradGuard no_grad;
  const double norm = head.weight.to(torch::kDouble).norm().item<double>();
  if (norm > 0) head.weight.mul_(head.original_norm / norm);
}

}  // namespace nad::defenses
