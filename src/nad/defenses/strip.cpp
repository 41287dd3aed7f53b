#include "nad/defenses/strip.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"
#include "nad/util/threads.h"

namespace nad::defenses {

std::string StripMethod::superimpose_name() const {
  return superimpose == Superimpose::kAdd ? "add" : "blend";
}
std::string StripMethod::entropy_name() const {
  return entropy == StripEntropy::kMeanOfEntropies ? "mean" : "of-mean";
}
std::string StripMethod::definition() const {
  const std::string blend = superimpose == Superimpose::kAdd
                                ? "x'_n = min(x + overlay_n, 255) / 255"
                                : "x'_n = (0.5 x + 0.5 overlay_n) / 255";
  const std::string entropy =
      this->entropy == StripEntropy::kMeanOfEntropies
          ? "H(x) = mean_n H(softmax(f(x'_n))), the mean of the N blends' Shannon entropies in "
            "bits"
          : "H(x) = H(mean_n softmax(f(x'_n))), the Shannon entropy in bits of the mean softmax";
  return entropy + ", " + blend + " in float; flagged when H(x) < threshold";
}

Superimpose parse_superimpose(const std::string& name, const std::string& option) {
  if (name == "add") return Superimpose::kAdd;
  if (name == "blend") return Superimpose::kBlend;
  throw UserError(option + " must be add or blend, not '" + name + "'");
}
StripEntropy parse_strip_entropy(const std::string& name, const std::string& option) {
  if (name == "mean") return StripEntropy::kMeanOfEntropies;
  if (name == "of-mean") return StripEntropy::kEntropyOfMean;
  throw UserError(option + " must be mean or of-mean, not '" + name + "'");
}

torch::Tensor superimpose(const torch::Tensor& images, const torch::Tensor& overlays,
                          Superimpose mode) {
  TORCH_CHECK(images.dim() == 4 && overlays.dim() == 4 &&
                  images.sizes().slice(1) == overlays.sizes().slice(1),
              "superimpose: images and overlays must be N x H x W x C of one size");
  const int64_t m = images.size(0), n = overlays.size(0);
  // Broadcast M x 1 x HWC against 1 x N x HWC: every image with every overlay in one op.
  torch::Tensor mixed =
      images.to(torch::kFloat).unsqueeze(1) + overlays.to(torch::kFloat).unsqueeze(0);
  if (mode == Superimpose::kAdd) {
    mixed = mixed.clamp_max_(255.0).div_(255.0);
  } else {
    mixed = mixed.mul_(0.5 / 255.0);
  }
  mixed = mixed.reshape({m * n, images.size(1), images.size(2), images.size(3)});
  return to_memory_format(mixed.permute({0, 3, 1, 2}));
}

namespace {

// Entropies of images[begin, end) in the calling thread, `per_pass` images (each with all the
// overlays) per forward pass.
torch::Tensor entropy_range(const models::Classifier& model, const torch::Tensor& images,
                            const torch::Tensor& overlays, int64_t begin, int64_t end,
                            int64_t per_pass, const StripMethod& method) {
  torch::InferenceMode guard;
  AutocastScope autocast(images.device());
  const int64_t n = overlays.size(0);
  std::vector<torch::Tensor> parts;
  for (int64_t start = begin; start < end; start += per_pass) {
    const torch::Tensor batch = images.slice(0, start, std::min(end, start + per_pass));
    const torch::Tensor logits =
        model->forward(superimpose(batch, overlays, method.superimpose)).logits;
    // Softmax in fp32 whatever the forward ran in; entropies and means in fp64.
    const torch::Tensor p =
        torch::softmax(logits.to(torch::kFloat), 1).to(torch::kDouble).view({batch.size(0), n, -1});
    // xlogy gives 0 log 0 = 0 for classes given no probability at all.
    auto entropy_bits = [](const torch::Tensor& q) {
      return torch::xlogy(q, q).sum(-1).neg_().div_(std::log(2.0));
    };
    const torch::Tensor h = method.entropy == StripEntropy::kMeanOfEntropies
                                ? entropy_bits(p).mean(1)
                                : entropy_bits(p.mean(1));
    parts.push_back(h.cpu());
  }
  if (parts.empty()) return torch::empty({0}, torch::kDouble);
  return torch::cat(parts);
}

}  // namespace

torch::Tensor strip_entropy(const models::Classifier& model, const torch::Tensor& images,
                            const torch::Tensor& overlays, int64_t batch_size,
                            const StripMethod& method) {
  TORCH_CHECK(overlays.size(0) > 0, "strip_entropy: no overlays");
  TORCH_CHECK(batch_size > 0, "strip_entropy: batch_size must be positive");
  const bool was_training = model->is_training();
  model->eval();
  const int64_t count = images.size(0);
  const int64_t per_pass = std::max<int64_t>(1, batch_size / overlays.size(0));
  const int64_t passes = (count + per_pass - 1) / per_pass;
  const int64_t workers =
      images.device().is_cpu() ? std::min<int64_t>(single_thread_workers(), passes) : 1;
  torch::Tensor entropy;
  if (workers <= 1) {
    entropy = entropy_range(model, images, overlays, 0, count, per_pass, method);
  } else {
    // As train::predict: whole passes split over single-threaded workers (the model is only
    // read in eval mode); the passes are the same as with one thread, so are the numbers.
    std::vector<torch::Tensor> parts(static_cast<size_t>(workers));
    run_single_threaded(workers, [&](int64_t w) {
      const int64_t begin = std::min(count, passes * w / workers * per_pass);
      const int64_t end = std::min(count, passes * (w + 1) / workers * per_pass);
      parts[static_cast<size_t>(w)] =
          entropy_range(model, images, overlays, begin, end, per_pass, method);
    });
    entropy = torch::cat(parts);
  }
  model->train(was_training);
  return entropy;
}

double strip_threshold(const torch::Tensor& clean_entropies, double frr) {
  if (!(frr >= 0 && frr < 1)) {
    throw UserError(flag::frr + " must be in [0, 1), not " + std::to_string(frr));
  }
  const int64_t n = clean_entropies.numel();
  if (n == 0) throw UserError("STRIP needs clean inputs to calibrate its threshold on; got none");
  // The small epsilon keeps products like 0.29 * 100 = 28.999999999999996 at 29.
  const int64_t k = std::min<int64_t>(n - 1, static_cast<int64_t>(std::floor(frr * n + 1e-9)));
  const torch::Tensor sorted = std::get<0>(clean_entropies.to(torch::kDouble).flatten().sort());
  return sorted[k].item<double>();
}

torch::Tensor strip_flags(const torch::Tensor& entropies, double threshold) {
  return entropies.lt(threshold);
}

double percent_flagged(const torch::Tensor& entropies, double threshold) {
  if (entropies.numel() == 0) return 0;
  return 100.0 * strip_flags(entropies, threshold).sum().item<double>() /
         static_cast<double>(entropies.numel());
}

double percent_accepted(const torch::Tensor& entropies, double threshold) {
  if (entropies.numel() == 0) return 0;
  return 100.0 - percent_flagged(entropies, threshold);
}

}  // namespace nad::defenses
