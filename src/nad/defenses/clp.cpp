#include "nad/defenses/clp.h"

#include "nad/models/layers.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::defenses {

torch::Tensor channel_lipschitz_bounds(const torch::Tensor& conv_weight,
                                       const torch::Tensor& bn_weight,
                                       const torch::Tensor& running_var) {
  torch::NoGradGuard no_grad;
  const int64_t channels = conv_weight.size(0);
  const torch::Tensor kernels = conv_weight.detach()
                                    .to(torch::kCPU, torch::kDouble)
                                    .contiguous()
                                    .view({channels, conv_weight.size(1), -1});
  const torch::Tensor largest = std::get<0>(torch::linalg_svdvals(kernels).max(1));
  const torch::Tensor scale = (bn_weight.detach().to(torch::kCPU, torch::kDouble) /
                               running_var.detach().to(torch::kCPU, torch::kDouble).sqrt())
                                  .abs();
  return largest * scale;
}

ClpResult clp_prune(const models::Classifier& model, const models::ModelSpec& spec,
                    const ClpOptions& options) {
  if (!(options.u >= 0)) throw UserError(flag::u + " must be >= 0");
  ClpResult result;
  result.model = models::clone_model(model, spec);
  torch::NoGradGuard no_grad;
  const auto parameters = result.model->named_parameters();
  const auto buffers = result.model->named_buffers();
  std::string conv;  // the convolution registered last so far
  for (const auto& item : models::weighted_layers(result.model)) {
    const std::string& layer = item.path;
    if (item.kind == models::LayerKind::kConvolution) {
      conv = layer;
      continue;
    }
    if (item.kind != models::LayerKind::kBatchNorm) continue;
    const torch::Tensor& weight = parameters[layer + ".weight"];
    const torch::Tensor& running_var = buffers[layer + ".running_var"];
    const torch::Tensor* conv_weight = conv.empty() ? nullptr : parameters.find(conv + ".weight");
    if (conv_weight == nullptr || conv_weight->size(0) != weight.size(0)) {
      result.skipped.push_back(layer);
      continue;
    }
    ClpLayer out;
    out.batch_norm = layer;
    out.conv = conv;
    out.bounds = channel_lipschitz_bounds(*conv_weight, weight, running_var);
    out.threshold =
        (out.bounds.mean() + options.u * out.bounds.std(/*unbiased=*/true)).item<double>();
    const torch::Tensor flagged = torch::nonzero(out.bounds > out.threshold).flatten();
    out.pruned.assign(flagged.data_ptr<int64_t>(), flagged.data_ptr<int64_t>() + flagged.numel());
    if (!out.pruned.empty()) {
      const torch::Tensor rows = flagged.to(weight.device());
      weight.index_fill_(0, rows, 0);
      if (const torch::Tensor* bias = parameters.find(layer + ".bias")) {
        bias->index_fill_(0, rows, 0);
      }
    }
    result.pruned += static_cast<int64_t>(out.pruned.size());
    result.channels += weight.size(0);
    result.layers.push_back(std::move(out));
  }
  if (result.layers.empty()) {
    throw UserError("CLP needs BatchNorm layers that follow convolutions; this model (" +
                    spec.arch + ") has none");
  }
  return result;
}

}  // namespace nad::defenses
