#include "nad/defenses/prune.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "nad/data/augment.h"
#include "nad/models/layers.h"
#include "nad/models/registry.h"
#include "nad/models/torchscript.h"
#include "nad/train/evaluate.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::defenses {

torch::Tensor last_group_activation(const models::Classifier& model, const torch::Tensor& images,
                                    int64_t batch_size, torch::Device device) {
  torch::NoGradGuard no_grad;
  model->to(device);
  model->eval();
  AutocastScope autocast(device);
  torch::Tensor sum;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    torch::Tensor inputs = data::to_input(images.slice(0, start, start + batch_size).to(device));
    torch::Tensor features = model->forward(inputs).features.back();
    torch::Tensor batch_sum = features.to(torch::kDouble).mean({2, 3}).sum(0).cpu();
    sum = sum.defined() ? sum + batch_sum : batch_sum;
  }
  if (!sum.defined()) throw UserError("Fine-pruning needs clean images to rank channels");
  return sum / static_cast<double>(images.size(0));
}

namespace {

std::vector<ChannelWeight> last_group_consumers(const models::Classifier& model) {
  std::vector<ChannelWeight> weights;
  for (const std::string& name : models::group_consumers(model, model->group_names().size() - 1)) {
    weights.push_back({name, 1});
  }
  return weights;
}

// Convolutions and BatchNorm layers of `model` by parameter path, in registration order.
std::vector<std::string> prunable_layers(const models::Classifier& model) {
  std::vector<std::string> layers;
  for (const auto& layer : models::weighted_layers(model)) {
    if (layer.kind == models::LayerKind::kConvolution ||
        layer.kind == models::LayerKind::kBatchNorm) {
      layers.push_back(layer.path);
    }
  }
  return layers;
}

std::string list_tail(const std::vector<std::string>& names, size_t count) {
  std::string out;
  const size_t first = names.size() > count ? names.size() - count : 0;
  if (first > 0) out = "..., ";
  for (size_t i = first; i < names.size(); ++i) out += (i > first ? ", " : "") + names[i];
  return out.empty() ? "(none)" : out;
}

}  // namespace

PruneTarget prune_target(const models::Classifier& model, const models::ModelSpec& spec,
                         const std::string& layer) {
  PruneTarget target;
  const std::vector<std::string> layers = prunable_layers(model);
  if (layer.empty()) {
    if (models::is_torchscript_arch(spec.arch)) {
      throw UserError(
          "Fine-pruning a TorchScript model needs " + flag::prune_layer +
          ": the convolution or BatchNorm layer whose output channels are pruned (the last ones: " +
          list_tail(layers, 6) + ")");
    }
    target.layer = model->group_names().back();
    target.weights = last_group_consumers(model);
    return target;
  }
  if (std::find(layers.begin(), layers.end(), layer) == layers.end()) {
    throw UserError(flag::prune_layer + " " + layer +
                    " is not a convolution or BatchNorm layer of the model (the last ones: " +
                    list_tail(layers, 6) + ")");
  }
  models::ModelSpec ranking_spec = spec;
  ranking_spec.groups = {layer};
  std::vector<std::string> groups;
  try {
    target.ranking = models::clone_model(model, ranking_spec);
    groups = target.ranking->group_names();
  } catch (const UserError&) {
    groups.clear();  // a family whose groups are only its stages: answered below
  }
  if (groups.size() != 1 || groups[0] != layer) {
    throw UserError(flag::prune_layer +
                    " needs a model whose feature maps can be taken at any layer "
                    "(a TorchScript model); " +
                    spec.arch + " prunes its last group, " + model->group_names().back() +
                    " (leave " + flag::prune_layer + " out)");
  }
  target.layer = layer;
  const auto parameters = model->named_parameters();
  target.weights.push_back({layer + ".weight", 0});
  if (parameters.find(layer + ".bias")) target.weights.push_back({layer + ".bias", 0});
  return target;
}

void apply_channel_mask(const models::Classifier& model, const torch::Tensor& keep,
                        const std::vector<ChannelWeight>& weights) {
  torch::NoGradGuard no_grad;
  const int64_t channels = keep.size(0);
  const auto parameters = model->named_parameters();
  for (const ChannelWeight& item : weights) {
    const torch::Tensor* weight = parameters.find(item.name);
    if (weight == nullptr) continue;
    torch::Tensor w = *weight;
    torch::Tensor mask = keep.to(w.device(), w.scalar_type());
    if (item.axis == 0) {
      // Broadcast over the other dimensions: a convolution's weight may be channels-last.
      std::vector<int64_t> shape(w.dim(), 1);
      shape[0] = channels;
      w.mul_(mask.view(shape));
    } else {
      w.view({w.size(0), channels, -1}).mul_(mask.view({1, channels, 1}));
    }
  }
}

void apply_channel_mask(const models::Classifier& model, const torch::Tensor& keep) {
  apply_channel_mask(model, keep, last_group_consumers(model));
}

PruneResult prune_channels(const models::Classifier& model, const models::ModelSpec& spec,
                           const CleanData& clean, const PruneOptions& options,
                           torch::Device device, const train::EpochEvaluation& evaluate,
                           const std::function<void(const std::string&)>& log) {
  if (clean.validation.size() == 0) throw UserError("Fine-pruning needs a held-out clean split");
  if (!(options.prune_ratio > 0 && options.prune_ratio <= 1)) {
    throw UserError(flag::prune_ratio + " must be in (0, 1]");
  }
  if (!(options.max_acc_drop >= 0)) throw UserError(flag::max_acc_drop + " must be >= 0");
  PruneResult result;
  result.target = prune_target(model, spec, options.layer);
  const std::vector<ChannelWeight>& weights = result.target.weights;
  result.model = models::clone_model(model, spec);
  result.model->to(device);
  const data::Dataset validation = clean.validation.to(device);
  // The ranked feature map is the ranking model's last group (the model itself by default).
  result.activation =
      last_group_activation(result.target.ranking ? result.target.ranking : result.model,
                            clean.train.images, options.batch_size, device);
  result.target.ranking = nullptr;  // done with it
  const int64_t channels = result.activation.size(0);
  result.order = std::get<1>(result.activation.sort(/*stable=*/true, 0, false));
  result.keep = torch::ones({channels}, torch::kBool);
  result.baseline_val_acc = train::accuracy(result.model, validation, options.batch_size);
  const int64_t limit = static_cast<int64_t>(std::floor(options.prune_ratio * channels));

  // Walk the pruning path one channel at a time on the hold-out (cheap), and stop before the
  // first prefix that costs more than max_acc_drop.
  models::Classifier probe = models::clone_model(result.model, spec);
  probe->to(device);
  result.path.push_back({0, 0.0, result.baseline_val_acc, std::nullopt});
  torch::Tensor keep = result.keep.clone();
  for (int64_t k = 1; k <= limit; ++k) {
    keep[result.order[k - 1].item<int64_t>()] = false;
    models::copy_weights(result.model, probe);
    apply_channel_mask(probe, keep, weights);
    const double val_acc = train::accuracy(probe, validation, options.batch_size);
    if (result.baseline_val_acc - val_acc > options.max_acc_drop) break;
    result.path.push_back({k, static_cast<double>(k) / channels, val_acc, std::nullopt});
    result.pruned = k;
  }
  for (int64_t k = 0; k < result.pruned; ++k) {
    result.keep[result.order[k].item<int64_t>()] = false;
  }
  apply_channel_mask(result.model, result.keep, weights);

  // Test-set ACC / ASR at evenly spaced places along the accepted path.
  if (evaluate) {
    std::set<int64_t> places;
    const int points = std::max(2, options.curve_points);
    for (int i = 0; i < points; ++i) {
      places.insert(static_cast<int64_t>(
          std::llround(static_cast<double>(i) * result.pruned / (points - 1))));
    }
    torch::Tensor step_keep = torch::ones({channels}, torch::kBool);
    for (auto& point : result.path) {
      if (point.pruned > 0) step_keep[result.order[point.pruned - 1].item<int64_t>()] = false;
      if (!places.count(point.pruned)) continue;
      models::copy_weights(model, probe);  // result.model is already fully pruned
      apply_channel_mask(probe, step_keep, weights);
      point.test = evaluate(probe);
      if (log && point.test) {
        char line[160];
        std::snprintf(line, sizeof line, "pruned %lld/%lld channels (%.0f%%): val %.2f%%, %s",
                      static_cast<long long>(point.pruned), static_cast<long long>(channels),
                      100 * point.fraction, point.val_acc, point.test->summary().c_str());
        log(line);
      }
    }
  }
  return result;
}

}  // namespace nad::defenses
