#pragma once
#include "nad/attacks/attack.h"
#include "nad/models/classifier.h"

namespace nad::attacks {

// Refool (Liu et al. 2020): clean-label; a reflection image is blended into each chosen
// target-class image, and into each test image for ASR. As in the reference implementation,
// each image gets a random reflection from the pool and, with probability 0.49, the ghost
// model, else the focal-blur model, both in a gamma-2.2 linear space with transmission weight
// alpha_t = 1 - U(0.05, 0.45). The reference draws ghost offsets of 3-8 pixels and blur sigmas
// of 1-5 pixels on images upscaled to 560 pixels; here images stay at their own size, so the
// offsets are 1..max(1, H/8) pixels and sigma is U(1, 5) * H / 64.
// Reflections: every image under --reflections (resized), else 200 training images of other
// classes picked with --pattern-seed. Parameters are drawn with --pattern-seed, so the same
// images always get the same reflections.
// With --reflection-select K, the pool is first a set of candidates (the --reflections folder,
// else 1,000 training images of other classes) and the K best of them are kept (see
// score_reflections).
class Refool : public Attack {
 public:
  Refool(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
         int64_t channels);
  void prepare(const data::Dataset& train) override;
  torch::Tensor apply(const torch::Tensor& images) const override;
  // Like apply, but every image gets reflection `reflection` of the pool (the reflection
  // models and their parameters are drawn as in apply).
  torch::Tensor apply_reflection(const torch::Tensor& images, int64_t reflection) const;
  const torch::Tensor& reflections() const { return reflections_; }  // R x H x W x C uint8
  // Whether --reflection-select still has to pick from the candidates.
  bool needs_selection() const { return options_.reflection_select > 0 && !selected_; }
  // Keeps the pool rows `rows` (int64), in that order; ends the selection.
  void keep_reflections(const torch::Tensor& rows);

  static constexpr int64_t kDefaultPoolSize = 200;
  static constexpr int64_t kSelectionCandidates = 1000;

 private:
  torch::Tensor blend(const torch::Tensor& images, const torch::Tensor& picks) const;

  torch::Tensor reflections_;
  bool selected_ = false;
};

// Refool's adversarial selection (one round of Liu et al.'s Algorithm 1): each reflection of
// the attack's pool is blended into `probe` (uint8 non-target images) and scored by `model`'s
// mean target-class probability on them; `model` should have been trained on data poisoned
// with this pool. Returns one score per reflection (float, in [0, 1]).
torch::Tensor score_reflections(const models::Classifier& model, const Refool& attack,
                                const torch::Tensor& probe, torch::Device device,
                                int64_t batch_size);

// The two reflection models on float H x W x C images in [0, 1] (t: the image, r: the
// reflection); both return the blended image in [0, 1].
// Ghost: r2 = g * r^2.2 + (1 - g) * (r^2.2 shifted by dy, dx, zero-filled), then
// (alpha_t * t^2.2 + (1 - alpha_t) * r2)^(1/2.2).
torch::Tensor refool_ghost(const torch::Tensor& t, const torch::Tensor& r, double alpha_t,
                           int64_t dy, int64_t dx, double ghost_alpha);
// Focal blur: rb = Gaussian blur of r^2.2 (kernel side 2 * ceil(2 sigma) + 1, mirrored
// borders); each channel of rb is lowered by att * (mean of t^2.2 + rb where above 1, minus
// 1), clipped to [0, 1], weighted by the reference's centred vignette (exp(-(u^2 + v^2) / 4), u and
// v running over about +-3 across the image) times (1 - alpha_t / 2), and added to alpha_t * t^2.2;
// the result goes back through ^(1/2.2).
torch::Tensor refool_focal_blur(const torch::Tensor& t, const torch::Tensor& r, double alpha_t,
                                double sigma, double att);

}  // namespace nad::attacks
