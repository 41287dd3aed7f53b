#include "nad/attacks/clean_label.h"

#include "nad/attacks/pgd.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

AttackOptions CleanLabel::with_four_corners(AttackOptions options) {
  options.trigger = "four-corner";
  return options;
}

CleanLabel::CleanLabel(AttackOptions options, int64_t num_classes, int64_t height, int64_t width)
    : BadNets(with_four_corners(std::move(options)), num_classes, height, width) {
  if (!(options_.eps >= 0 && options_.eps <= 255))
    throw UserError(flag::eps + " must be in [0, 255]");
  if (options_.pgd_steps < 0) throw UserError(flag::pgd_steps + " must be >= 0");
}

void CleanLabel::set_clean_model(models::Classifier model, torch::Device device) {
  model_ = std::move(model);
  device_ = device;
}

torch::Tensor CleanLabel::poison_images(const torch::Tensor& images,
                                        const torch::Tensor& labels) const {
  if (!model_) {
    throw UserError(flag::attack +
                    " cl needs a clean model for its adversarial perturbation: give " +
                    flag::clean_model + " (nad train and nad poison train one when it is omitted)");
  }
  PgdOptions pgd;
  pgd.eps = options_.eps / 255.0;
  pgd.steps = options_.pgd_steps;
  return apply(pgd_perturb(model_, images, labels, pgd, device_));
}

}  // namespace nad::attacks
