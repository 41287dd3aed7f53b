#pragma once
#include <functional>
#include <vector>

#include "nad/defenses/clean_subset.h"
#include "nad/models/classifier.h"
#include "nad/train/trainer.h"

namespace nad::defenses {

// Mode Connectivity Repair (Zhao et al. 2020): a quadratic Bezier curve
//   theta(t) = (1 - t)^2 theta_0 + 2 t (1 - t) theta_bend + t^2 theta_1
// between two models (the backdoored one and a copy finetuned on the clean data). Only the
// bend is trained, on the clean data, with a fresh t ~ U(0, 1) per batch; since theta(t) is
// linear in the bend, its gradient is 2 t (1 - t) times the loss gradient at theta(t).
// BatchNorm statistics are recomputed on the clean data at each interior point; the endpoints
// keep their own.
struct McrOptions {
  train::TrainOptions train;  // epochs, lr, schedule, batch, augmentation of the bend's training
};

struct CurveEnds {
  std::vector<torch::Tensor> start, bend, end;  // parameters, in model->parameters() order
};

// A model's parameters, detached copies.
std::vector<torch::Tensor> parameter_state(const models::Classifier& model);

// Writes theta(t) into `model`'s parameters (exactly theta_0 at t = 0 and theta_1 at t = 1).
void set_curve_point(const models::Classifier& model, const CurveEnds& curve, double t);

// Recomputes every BatchNorm's running statistics as the plain average over `images`.
void update_batchnorm(const models::Classifier& model, const torch::Tensor& images,
                      int64_t batch_size, torch::Device device);

// Trains the bend, starting from the midpoint of the two ends. Returns per-epoch records
// (loss and train accuracy at the sampled points).
std::vector<train::EpochRecord> train_curve(const models::Classifier& start,
                                            const models::Classifier& end,
                                            const models::ModelSpec& spec, const CleanData& clean,
                                            const McrOptions& options, CurveEnds& curve);

// The model at t: parameters on the curve, BatchNorm from the nearer end at t = 0 or 1 and
// recomputed on `bn_images` elsewhere.
models::Classifier curve_model(const models::Classifier& start, const models::Classifier& end,
                               const models::ModelSpec& spec, const CurveEnds& curve, double t,
                               const torch::Tensor& bn_images, torch::Device device);

}  // namespace nad::defenses
