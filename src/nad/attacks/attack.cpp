#include "nad/attacks/attack.h"

#include <cmath>

#include "nad/attacks/badnets.h"
#include "nad/attacks/blend.h"
#include "nad/attacks/clean_label.h"
#include "nad/attacks/refool.h"
#include "nad/attacks/sig.h"
#include "nad/attacks/trojan.h"
#include "nad/attacks/wanet.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

bool is_clean_label(const std::string& attack_name) {
  return attack_name == "cl" || attack_name == "sig" || attack_name == "refool";
}

double default_poison_rate(const std::string& attack_name) {
  return is_clean_label(attack_name) ? 0.8 : 0.1;
}

double AttackOptions::effective_poison_rate() const {
  return poison_rate ? *poison_rate : default_poison_rate(name);
}

nlohmann::json AttackOptions::to_json() const {
  nlohmann::json j = {{"name", name}};
  if (name == "none") return j;
  j["target"] = target;
  j["poison_rate"] = effective_poison_rate();
  j["clean_label"] = is_clean_label(name);
  j["label_mode"] = label_mode_name(label_mode);
  if (name == "badnets") j["trigger"] = trigger;
  if (name == "blend") {
    j["alpha"] = alpha;
    j["pattern_file"] = pattern_file;
    j["pattern_seed"] = pattern_seed;
  }
  if (name == "sig") {
    j["delta"] = delta;
    j["freq"] = freq;
  }
  if (name == "trojan") j["trigger_file"] = trigger_file;
  if (name == "cl") {
    j["trigger"] = "four-corner";
    j["eps"] = eps;
    j["pgd_steps"] = pgd_steps;
  }
  if (name == "refool") {
    j["reflections_dir"] = reflections_dir;
    j["reflection_select"] = reflection_select;
    j["pattern_seed"] = pattern_seed;
  }
  if (name == "wanet") {
    j["grid_k"] = grid_k;
    j["strength"] = strength;
    j["cross_ratio"] = cross_ratio;
    j["pattern_seed"] = pattern_seed;
  }
  return j;
}

LabelMode parse_label_mode(const std::string& text) {
  if (text == "all2one") return LabelMode::kAllToOne;
  if (text == "all2all") return LabelMode::kAllToAll;
  throw UserError(flag::label_mode + " must be all2one or all2all, not '" + text + "'");
}

std::string label_mode_name(LabelMode mode) {
  return mode == LabelMode::kAllToOne ? "all2one" : "all2all";
}

Attack::Attack(AttackOptions options, int64_t num_classes)
    : options_(std::move(options)), num_classes_(num_classes) {
  options_.poison_rate = options_.effective_poison_rate();
  if (is_clean_label(options_.name) && options_.label_mode == LabelMode::kAllToAll) {
    throw UserError(flag::attack + " " + options_.name +
                    " is a clean-label attack: it only supports " + flag::label_mode + " all2one");
  }
  // All-to-all attacks have no single target; --target only matters for all-to-one.
  if (options_.label_mode == LabelMode::kAllToOne &&
      (options_.target < 0 || options_.target >= num_classes)) {
    throw UserError(flag::target + " " + std::to_string(options_.target) + " is not a class (0.." +
                    std::to_string(num_classes - 1) + ")");
  }
  check_poison_rate(*options_.poison_rate);
}

void check_poison_rate(double rate) {
  if (!(rate > 0 && rate <= 1)) {
    throw UserError(flag::poison_rate + " must be in (0, 1], not " + std::to_string(rate));
  }
}

torch::Tensor target_labels(const torch::Tensor& labels, const AttackOptions& options,
                            int64_t num_classes) {
  if (options.label_mode == LabelMode::kAllToAll) return (labels + 1).remainder(num_classes);
  return torch::full_like(labels, options.target);
}

torch::Tensor Attack::target_labels(const torch::Tensor& labels) const {
  return attacks::target_labels(labels, options_, num_classes_);
}

PoisonedSet Attack::poison(const data::Dataset& train, uint64_t seed) const {
  const bool clean = clean_label();
  torch::Tensor eligible;
  if (clean) {
    eligible = torch::nonzero(train.labels == options_.target).flatten();
  } else if (options_.label_mode == LabelMode::kAllToOne) {
    eligible = torch::nonzero(train.labels != options_.target).flatten();
  } else {
    eligible = torch::arange(train.size(), torch::kLong);
  }
  // Clean-label attacks: the rate is a fraction of the target class.
  const int64_t base = clean ? eligible.size(0) : train.size();
  const int64_t count = std::min<int64_t>(
      eligible.size(0), std::llround(*options_.poison_rate * static_cast<double>(base)));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor order = torch::randperm(eligible.size(0), generator, torch::kLong);
  torch::Tensor indices = std::get<0>(eligible.index_select(0, order.slice(0, 0, count)).sort());

  PoisonedSet out;
  out.indices = indices;
  out.data.images = train.images.clone();
  out.data.labels = train.labels.clone();
  if (count > 0) {
    out.data.images.index_copy_(0, indices,
                                poison_images(train.images.index_select(0, indices),
                                              train.labels.index_select(0, indices)));
    if (!clean) {
      out.data.labels.index_copy_(0, indices, target_labels(train.labels.index_select(0, indices)));
    }
  }
  return out;
}

TriggeredSet Attack::triggered_test_set(const data::Dataset& test) const {
  torch::Tensor rows = options_.label_mode == LabelMode::kAllToOne
                           ? torch::nonzero(test.labels != options_.target).flatten()
                           : torch::arange(test.size(), torch::kLong);
  TriggeredSet out;
  out.data.images = apply(test.images.index_select(0, rows));
  out.data.labels = test.labels.index_select(0, rows);
  out.attack_targets = target_labels(out.data.labels);
  return out;
}

std::vector<std::string> attack_names() {
  return {"none", "badnets", "trojan", "blend", "cl", "sig", "refool", "wanet"};
}

namespace {
std::string join_attack_names() {
  std::string out;
  for (const auto& name : attack_names()) out += (out.empty() ? "" : ", ") + name;
  return out;
}
}  // namespace

std::unique_ptr<Attack> create_attack(const AttackOptions& options, int64_t height, int64_t width,
                                      int64_t channels, int64_t num_classes) {
  if (options.name == "none" || options.name.empty()) return nullptr;
  if (options.name == "badnets") {
    return std::make_unique<BadNets>(options, num_classes, height, width);
  }
  if (options.name == "blend") {
    return std::make_unique<Blend>(options, num_classes, height, width, channels);
  }
  if (options.name == "trojan") {
    return std::make_unique<Trojan>(options, num_classes, height, width, channels);
  }
  if (options.name == "cl")
    return std::make_unique<CleanLabel>(options, num_classes, height, width);
  if (options.name == "refool") {
    return std::make_unique<Refool>(options, num_classes, height, width, channels);
  }
  if (options.name == "sig") return std::make_unique<Sig>(options, num_classes, height, width);
  if (options.name == "wanet") return std::make_unique<WaNet>(options, num_classes, height, width);
  throw UserError("unknown " + flag::attack + " '" + options.name + "' (choose " +
                  join_attack_names() + ")");
}

}  // namespace nad::attacks
