#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "nad/defenses/clean_subset.h"
#include "nad/models/classifier.h"
#include "nad/train/trainer.h"

namespace nad::defenses {

// Fine-pruning (Liu et al. 2018), pruning step: the channels of the last convolutional feature
// map (the last group's output) are ranked by mean activation on the defender's clean images
// and pruned from the least active up, while the held-out clean accuracy stays within
// `max_acc_drop` points of the unpruned model's and at most `prune_ratio` of them are gone.
// A channel is pruned by zeroing every weight that reads it (the classifier's columns), so it
// no longer reaches the logits; finetuning afterwards keeps those weights at zero.
struct PruneOptions {
  // A convolution or BatchNorm layer by parameter path ("layer4.1.conv2"): its output channels
  // are ranked and pruned instead of the last group's, by zeroing the weights (and bias) that
  // make them. Needs a model whose groups can be any submodule (TorchScript models).
  std::string layer;
  double max_acc_drop = 10;  // points
  double prune_ratio = 0.9;  // largest fraction of channels pruned
  int curve_points = 11;     // test-set measurements along the pruning path
  int64_t batch_size = 64;
};

struct PrunePoint {
  int64_t pruned = 0;
  double fraction = 0;
  double val_acc = 0;
  std::optional<train::Metrics> test;  // measured at curve_points places
};

// The weights that carry one channel of the pruned feature map, each with the axis that runs
// over those channels.
struct ChannelWeight {
  std::string name;
  int64_t axis = 0;
};

// What is pruned: the last group's output (its consumers' columns are zeroed), or the output of
// the convolution or BatchNorm layer `layer` (its own rows are zeroed).
struct PruneTarget {
  std::string layer;                   // the pruned feature map, for reports
  std::vector<ChannelWeight> weights;  // zeroed per pruned channel
  // A copy of the model whose last group is that layer's output (null for the last group).
  models::Classifier ranking;
};

// The target for `layer` (empty: the last group). A layer that is not a convolution or
// BatchNorm of `model`, or a model that cannot expose its output, is a UserError listing the
// convolutions and BatchNorm layers there are.
PruneTarget prune_target(const models::Classifier& model, const models::ModelSpec& spec,
                         const std::string& layer);

struct PruneResult {
  models::Classifier model;  // the pruned copy, before finetuning
  PruneTarget target;
  torch::Tensor activation;  // per channel, float64
  torch::Tensor order;       // channels from least to most active
  torch::Tensor keep;        // bool per channel: false = pruned
  int64_t pruned = 0;
  double baseline_val_acc = 0;
  std::vector<PrunePoint> path;  // every prefix tried, in order
};

// Mean of each channel of the last group's output over `images` (uint8 N x H x W x C) and
// positions, in eval mode.
torch::Tensor last_group_activation(const models::Classifier& model, const torch::Tensor& images,
                                    int64_t batch_size, torch::Device device);

// Zeroes the weights of `weights` along their channel axis where `keep` (bool, one per channel)
// is false. The logits then equal those of the model with those channels' outputs removed.
void apply_channel_mask(const models::Classifier& model, const torch::Tensor& keep,
                        const std::vector<ChannelWeight>& weights);
// The same for the last group's channels (the weights reading them).
void apply_channel_mask(const models::Classifier& model, const torch::Tensor& keep);

// Prunes a copy of `model` (never the original). `clean.validation` must not be empty.
PruneResult prune_channels(const models::Classifier& model, const models::ModelSpec& spec,
                           const CleanData& clean, const PruneOptions& options,
                           torch::Device device, const train::EpochEvaluation& evaluate = {},
                           const std::function<void(const std::string&)>& log = {});

}  // namespace nad::defenses
