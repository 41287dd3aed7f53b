#pragma once
#include "nad/attacks/attack.h"
#include "nad/models/classifier.h"

namespace nad::attacks {

// Trojan (Liu et al. 2018, TrojanNN): a square patch, optimised on a model to excite one
// internal neuron, stamped into the bottom-right corner. The patch comes from --trigger-file
// (an image of S x S pixels, S at most the image side); generate_trojan_trigger makes one.
class Trojan : public Attack {
 public:
  Trojan(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
         int64_t channels);
  // `patch`: S x S x C uint8.
  Trojan(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
         const torch::Tensor& patch);
  torch::Tensor apply(const torch::Tensor& images) const override;
  const torch::Tensor& patch() const { return patch_; }

 private:
  void check_patch(int64_t height, int64_t width);
  torch::Tensor patch_;
};

struct TrojanTriggerOptions {
  int64_t group = -1;   // which group output holds the neuron (0-based); -1: the last
  int64_t size = 5;     // patch side in pixels
  int64_t neuron = -1;  // channel of that group; -1: the largest summed outgoing weight
  int steps = 300;      // Adam steps on the patch
  double lr = 0.05;
  int64_t batch_size = 128;  // images the patch is optimised over
  uint64_t seed = 0;         // initial patch
};

struct TrojanTrigger {
  torch::Tensor patch;  // S x S x C uint8
  int64_t group = 0;
  int64_t neuron = 0;
  // The neuron's activation (its channel's maximum over positions) averaged over the images,
  // clean and with the final (uint8) patch.
  double activation_clean = 0;
  double activation_triggered = 0;
};

// The neuron with the largest summed absolute outgoing weight among `channels` channels of
// group `group`, as TrojanNN selects it. Returns per-channel sums in `sums` when given.
int64_t select_trojan_neuron(const models::Classifier& model, size_t group, int64_t channels,
                             torch::Tensor* sums = nullptr);

// Optimises a patch, stamped bottom-right into `images` (uint8 N x H x W x C), to maximise
// the chosen neuron's activation (its channel's maximum over positions, averaged over images). The
// model is left in eval mode and unchanged.
TrojanTrigger generate_trojan_trigger(const models::Classifier& model, const torch::Tensor& images,
                                      const TrojanTriggerOptions& options, torch::Device device);

}  // namespace nad::attacks
