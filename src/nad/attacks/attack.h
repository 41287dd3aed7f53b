#pragma once
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "nad/data/dataset.h"

namespace nad::attacks {

enum class LabelMode { kAllToOne, kAllToAll };

// Everything that defines a backdoor attack. `name` "none" means no attack.
struct AttackOptions {
  std::string name = "none";     // none | badnets | trojan | blend | cl | sig | refool | wanet
  std::string trigger = "grid";  // badnets: grid | square | four-corner
  double alpha = 0.2;            // blend weight of the pattern
  std::string pattern_file;      // blend: an image file; empty means seeded uniform noise
  uint64_t pattern_seed = 0;     // blend, wanet: seed of the pattern / warping field (fixed)
  double delta = 20;             // sig: amplitude on the 0-255 scale
  double freq = 6;               // sig: periods across the image width
  int64_t grid_k = 4;            // wanet: control grid side
  double strength = 0.5;         // wanet: warping strength s
  double cross_ratio = 2;        // wanet: noise-mode rows per poisoned row
  std::string trigger_file;      // trojan: the patch image (nad trojan-trigger makes one)
  double eps = 16;               // cl: PGD L-inf radius on the 0-255 scale
  int64_t pgd_steps = 10;        // cl: PGD iterations
  std::string reflections_dir;   // refool: reflection images; empty: non-target training images
  // refool: keep the K reflections a model trained on the poisoned data finds most effective
  // (Refool's adversarial selection; needs a model first); 0: no selection.
  int64_t reflection_select = 0;
  int64_t target = 0;
  // Poison-label attacks: the fraction of the training set poisoned. Clean-label attacks: the
  // fraction of the target class. Unset: default_poison_rate().
  std::optional<double> poison_rate;
  LabelMode label_mode = LabelMode::kAllToOne;

  double effective_poison_rate() const;
  nlohmann::json to_json() const;
};

// Clean-label attacks poison only target-class training images, which keep their label.
bool is_clean_label(const std::string& attack_name);
// 0.8 (of the target class) for clean-label attacks, else 0.1 (of the training set).
double default_poison_rate(const std::string& attack_name);
// Throws UserError naming --poison-rate unless 0 < rate <= 1.
void check_poison_rate(double rate);

// The training set after poisoning, and which rows were poisoned.
struct PoisonedSet {
  data::Dataset data;
  torch::Tensor indices;  // int64, sorted: triggered rows (relabelled unless clean-label)
  // WaNet noise mode: rows warped with extra noise that keep their label (int64, sorted; empty
  // for other attacks).
  torch::Tensor noise_indices = torch::empty({0}, torch::kLong);
};

using TriggeredSet = data::TriggeredSet;

// A backdoor attack: a trigger stamped on uint8 N x H x W x C images plus a labelling rule.
class Attack {
 public:
  Attack(AttackOptions options, int64_t num_classes);
  virtual ~Attack() = default;

  const AttackOptions& options() const { return options_; }  // poison_rate resolved
  bool clean_label() const { return is_clean_label(options_.name); }
  // Stamps the trigger on every image; returns a new tensor.
  virtual torch::Tensor apply(const torch::Tensor& images) const = 0;
  // Called once with the clean training set before poison() or apply(): attacks that draw
  // material from it (Refool's default reflections) take it here.
  virtual void prepare(const data::Dataset& train) { (void)train; }
  // The label the attacker wants for images of true class `labels`.
  torch::Tensor target_labels(const torch::Tensor& labels) const;
  // Picks round(poison_rate * N) rows with the seed (all-to-one: among non-target rows),
  // stamps the trigger and relabels them. Clean-label attacks: round(poison_rate * T) of the
  // T target-class rows, labels kept.
  virtual PoisonedSet poison(const data::Dataset& train, uint64_t seed) const;
  // The test rows an ASR is measured on (all-to-one: those not already of the target class),
  // triggered.
  TriggeredSet triggered_test_set(const data::Dataset& test) const;

 protected:
  // What poison() writes into the chosen training rows: the triggered images by default.
  virtual torch::Tensor poison_images(const torch::Tensor& images,
                                      const torch::Tensor& labels) const {
    (void)labels;
    return apply(images);
  }

  AttackOptions options_;
  int64_t num_classes_;
};

// The label the attacker wants for images of true class `labels` (int64): options.target, or
// the next class for all-to-all.
torch::Tensor target_labels(const torch::Tensor& labels, const AttackOptions& options,
                            int64_t num_classes);

// Every --attack name, "none" first.
std::vector<std::string> attack_names();

// Builds the attack for images of the given shape; nullptr for "none". Throws UserError on a
// bad option.
std::unique_ptr<Attack> create_attack(const AttackOptions& options, int64_t height, int64_t width,
                                      int64_t channels, int64_t num_classes);

LabelMode parse_label_mode(const std::string& text);
std::string label_mode_name(LabelMode mode);

}  // namespace nad::attacks
