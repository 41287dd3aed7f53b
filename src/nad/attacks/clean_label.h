#pragma once
#include "nad/attacks/badnets.h"
#include "nad/models/classifier.h"

namespace nad::attacks {

// Label-consistent attack, CL (Turner et al. 2019): chosen target-class training images are
// first pushed away from their class by PGD on a clean model (L-inf --eps on the 0-255 scale,
// --pgd-steps), so the model must lean on the trigger to fit them, then stamped with the
// checkerboard in all four corners; labels are kept. At test time: the checkerboard only.
class CleanLabel : public BadNets {
 public:
  CleanLabel(AttackOptions options, int64_t num_classes, int64_t height, int64_t width);
  // The model PGD runs on; poison() refuses to run without one.
  void set_clean_model(models::Classifier model, torch::Device device);
  bool has_clean_model() const { return model_ != nullptr; }

 protected:
  torch::Tensor poison_images(const torch::Tensor& images,
                              const torch::Tensor& labels) const override;

 private:
  static AttackOptions with_four_corners(AttackOptions options);
  models::Classifier model_;
  torch::Device device_ = torch::kCPU;
};

}  // namespace nad::attacks
