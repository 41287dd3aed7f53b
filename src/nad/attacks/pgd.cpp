#include "nad/attacks/pgd.h"

#include "nad/data/augment.h"
#include "nad/util/stop.h"

namespace nad::attacks {

torch::Tensor pgd_perturb(const models::Classifier& model, const torch::Tensor& images,
                          const torch::Tensor& labels, const PgdOptions& options,
                          torch::Device device) {
  const double step = options.step_size > 0
                          ? options.step_size
                          : 2.5 * options.eps / std::max<int64_t>(1, options.steps);
  torch::AutoGradMode enable_grad(true);  // callers may hold a NoGradGuard
  model->to(device);
  model->eval();
  std::vector<torch::Tensor> frozen;
  for (auto& p : model->parameters()) {
    if (p.requires_grad()) {
      frozen.push_back(p);
      p.requires_grad_(false);
    }
  }
  std::vector<torch::Tensor> batches;
  for (int64_t start = 0; start < images.size(0); start += options.batch_size) {
    // PGD over a whole target class takes minutes on a CPU; a Ctrl-C need not wait for it
    // (nothing is lost: it is recomputed, identically, when the run resumes).
    if (stop_requested()) {
      for (auto& p : frozen) p.requires_grad_(true);
      throw Interrupted("stopped by " + signal_name(stop_signal()) +
                            " while making CL's adversarial images (" + std::to_string(start) +
                            " of " + std::to_string(images.size(0)) + " done)",
                        stop_signal());
    }
    const int64_t end = std::min(images.size(0), start + options.batch_size);
    torch::Tensor clean = data::to_input(images.slice(0, start, end).to(device));
    torch::Tensor target = labels.slice(0, start, end).to(device);
    torch::Tensor x = clean.clone();
    for (int64_t i = 0; i < options.steps; ++i) {
      x.requires_grad_(true);
      torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x).logits, target);
      torch::Tensor grad = torch::autograd::grad({loss}, {x})[0];
      x = x.detach() + step * grad.sign();
      x = torch::min(torch::max(x, clean - options.eps), clean + options.eps).clamp(0, 1);
    }
    batches.push_back(
        (x.detach() * 255).round().clamp(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1}).cpu());
  }
  for (auto& p : frozen) p.requires_grad_(true);
  if (batches.empty()) return images.clone();
  return torch::cat(batches).contiguous().to(images.device());
}

}  // namespace nad::attacks
