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

struct PruneResult {
  models::Classifier model;  // the pruned copy, before finetuning
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

// Zeroes the weights reading the last group's channels where `keep` (bool, one per channel) is
// false. The logits then equal those of the model with those channels' outputs removed.
void apply_channel_mask(const models::Classifier& model, const torch::Tensor& keep);

// Prunes a copy of `model` (never the original). `clean.validation` must not be empty.
PruneResult prune_channels(const models::Classifier& model, const models::ModelSpec& spec,
                           const CleanData& clean, const PruneOptions& options,
                           torch::Device device, const train::EpochEvaluation& evaluate = {},
                           const std::function<void(const std::string&)>& log = {});

}  // namespace nad::defenses
