#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nad/data/dataset.h"
#include "nad/models/classifier.h"
#include "nad/train/state.h"

// Neural Cleanse (Wang et al., IEEE S&P 2019): for every class, reverse-engineer the smallest
// trigger (mask and pattern) that sends clean images there; a class whose trigger is far
// smaller than the others' (by the median absolute deviation) is a backdoor target. Uses only
// the model and clean images, never the attack.
namespace nad::defenses {

struct NeuralCleanseOptions {
  int epochs = 60;               // at most, per class
  int64_t steps_per_epoch = 10;  // Adam steps between two looks at the schedule
  int64_t batch_size = 32;       // clean images per class and step
  double lr = 0.1;               // Adam, with the paper code's betas (0.5, 0.9)
  // Lambda, the weight of the mask's L1 norm, once the trigger has reached the class for
  // `patience` epochs (it is 0 until then, as in the paper's code).
  double init_cost = 1e-3;
  double cost_multiplier = 1.5;  // lambda x 1.5 up, / 1.5^1.5 down, as the paper's code
  int patience = 5;              // epochs of success (or failure) before lambda moves
  // A class stops once its best norm has not improved by 1% for this many epochs, after lambda
  // has moved both up and down (the paper's code: 5 x patience on epochs four times as long).
  int early_stop_patience = 10;
  double success_threshold = 0.99;  // attack success a mask must reach (training and held-out)
  uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  int64_t eval_batch_size = 64;
  bool quiet = false;
  // Resumable: the optimisation's state is saved here after every epoch (null: not saved).
  std::shared_ptr<const train::StateStore> state;
  std::string state_key = "scan";

  nlohmann::json to_json() const;
};

// One class's reversed trigger: x' = (1 - mask) * x + mask * pattern on the 0-255 scale.
struct ReversedTrigger {
  int64_t target = 0;
  torch::Tensor mask;     // H x W float in [0, 1], on the CPU
  torch::Tensor pattern;  // H x W x C float in [0, 255], on the CPU
  bool reached = false;   // some mask reached the success threshold, also on held-out images
  double norm = 0;        // L1 norm of the best such mask (of the last one when not reached)
  double success = 0;     // its attack success on the held-out images, in percent
  int epochs = 0;         // epochs run
  double cost = 0;        // lambda at the end

  nlohmann::json to_json() const;
};

// Stamps a reversed trigger on uint8 N x H x W x C images, giving the model's float input
// (N x C x H x W in [0, 1], the run's memory format).
torch::Tensor stamp_reversed(const torch::Tensor& images, const torch::Tensor& mask,
                             const torch::Tensor& pattern);
// Percent of `images` whose label is not `trigger.target` that the model puts in the target
// class once the trigger is stamped on them.
double reversed_trigger_success(const models::Classifier& model, const ReversedTrigger& trigger,
                                const data::Dataset& images, int64_t batch_size);

// Reverses one trigger per class of `num_classes`, all classes optimised together in one batch,
// on `optimise` and checked on `holdout` (both clean, labelled). `on_class_done` is called as
// each class finishes. The model is left unchanged.
std::vector<ReversedTrigger> reverse_triggers(
    const models::Classifier& model, int64_t num_classes, const data::Dataset& optimise,
    const data::Dataset& holdout, const NeuralCleanseOptions& options,
    const std::function<void(const ReversedTrigger&)>& on_class_done = {});

// The paper's outlier test on the norms: median, MAD, and per class the anomaly index
// (median - norm) / (1.4826 * MAD), positive below the median. A class is flagged when its
// index exceeds `threshold`. Needs at least 3 classes (UserError otherwise).
// With AnomalyScale::kLog the same test runs on the norms' natural logarithms (median and MAD
// then in log units): a class stands out by the factor its norm is below the others', which
// suits norms whose spread grows with their size (measured on Fashion-MNIST: clean classes from
// 18 to 123 pixels). kLinear is the paper's.
enum class AnomalyScale { kLinear, kLog };
std::string anomaly_scale_name(AnomalyScale scale);  // "linear" | "log"
struct AnomalyResult {
  AnomalyScale scale = AnomalyScale::kLinear;
  double median = 0;  // of the norms, or of their logarithms
  double mad = 0;
  std::vector<double> index;
  std::vector<int64_t> flagged;  // classes, by decreasing index

  // The norm whose index equals `threshold` (classes below it are flagged), in pixels.
  double flag_below(double threshold) const;
};
AnomalyResult anomaly_index(const std::vector<double>& norms, double threshold,
                            AnomalyScale scale = AnomalyScale::kLinear);

}  // namespace nad::defenses
