#include "nad/defenses/neural_cleanse.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <limits>
#include <map>

#include <ATen/CPUGeneratorImpl.h>

#include "nad/train/trainer.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/progress.h"
#include "nad/util/stop.h"

namespace nad::defenses {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// The paper code's tanh parametrisation keeps masks and patterns strictly inside their range.
constexpr double kTanhEps = 1e-7;
constexpr double kAdamBeta1 = 0.5, kAdamBeta2 = 0.9, kAdamEps = 1e-8;
// A best norm must shrink by more than this factor to count as progress for early stopping.
constexpr double kEarlyStopFactor = 0.99;

torch::Tensor squash(const torch::Tensor& raw) { return torch::tanh(raw) / (2 - kTanhEps) + 0.5; }
torch::Tensor unsquash(const torch::Tensor& unit) {
  return torch::atanh((unit - 0.5) * (2 - kTanhEps));
}

nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
double number_or_inf(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : kInf; }

// The paper code's schedule of lambda and its early stop, for one class. Lambda starts at 0 (the
// paper code's reset_cost_to_zero): the trigger first learns to reach the class at all, and only
// after --patience epochs of success in a row does lambda start at init_cost, with the counters
// and flags cleared. A class that never gets there keeps lambda 0 and its largest mask. Without
// that warm-up, the first epochs' failures lower lambda and set the down flag, and the early stop
// can then end a class while lambda is still near init_cost and its mask far from the smallest
// (measured: Fashion-MNIST classes stopped at norms 110-137 at lambda 0.0012).
struct ClassSchedule {
  double cost = 0;
  int set_counter = 0;
  int up_counter = 0, down_counter = 0;
  bool up_flag = false, down_flag = false;
  int early_counter = 0;
  double early_best = kInf;
  double best_norm = kInf;
  double best_success = 0;
  bool done = false;
  int epochs = 0;
  int64_t adam_steps = 0;

  nlohmann::json to_json() const {
    return {{"cost", cost},
            {"set_counter", set_counter},
            {"up_counter", up_counter},
            {"down_counter", down_counter},
            {"up_flag", up_flag},
            {"down_flag", down_flag},
            {"early_counter", early_counter},
            {"early_best", finite_or_null(early_best)},
            {"best_norm", finite_or_null(best_norm)},
            {"best_success", best_success},
            {"done", done},
            {"epochs", epochs},
            {"adam_steps", adam_steps}};
  }
  static ClassSchedule from_json(const nlohmann::json& j) {
    ClassSchedule s;
    s.cost = j.at("cost").get<double>();
    s.set_counter = j.value("set_counter", 0);
    s.up_counter = j.at("up_counter").get<int>();
    s.down_counter = j.at("down_counter").get<int>();
    s.up_flag = j.at("up_flag").get<bool>();
    s.down_flag = j.at("down_flag").get<bool>();
    s.early_counter = j.at("early_counter").get<int>();
    s.early_best = number_or_inf(j.at("early_best"));
    s.best_norm = number_or_inf(j.at("best_norm"));
    s.best_success = j.at("best_success").get<double>();
    s.done = j.at("done").get<bool>();
    s.epochs = j.at("epochs").get<int>();
    s.adam_steps = j.at("adam_steps").get<int64_t>();
    return s;
  }

  // After an epoch whose training attack success was `success` (a fraction): moves lambda,
  // counts towards the early stop, and says whether the class is finished.
  void end_epoch(double success, const NeuralCleanseOptions& o) {
    ++epochs;
    if (std::isfinite(best_norm)) {
      early_counter = best_norm >= kEarlyStopFactor * early_best ? early_counter + 1 : 0;
    }
    early_best = std::min(early_best, best_norm);
    if (cost == 0 && success >= o.success_threshold) {
      if (++set_counter >= o.patience) {
        cost = o.init_cost;
        up_counter = down_counter = 0;
        up_flag = down_flag = false;
      }
    } else {
      set_counter = 0;
    }
    if (success >= o.success_threshold) {
      ++up_counter;
      down_counter = 0;
    } else {
      up_counter = 0;
      ++down_counter;
    }
    if (up_counter >= o.patience) {
      up_counter = 0;
      cost *= o.cost_multiplier;
      up_flag = true;
    } else if (down_counter >= o.patience) {
      down_counter = 0;
      cost /= std::pow(o.cost_multiplier, 1.5);
      down_flag = true;
    }
    if ((up_flag && down_flag && early_counter >= o.early_stop_patience) || epochs >= o.epochs) {
      done = true;
    }
  }
};

// Turns off gradients of the model's own weights while alive (only the trigger is learnt), and
// puts the model in evaluation mode; both restored after.
class FrozenModel {
 public:
  explicit FrozenModel(const models::Classifier& model)
      : model_(model), was_training_(model->is_training()) {
    for (auto& p : model_->parameters()) {
      requires_grad_.push_back(p.requires_grad());
      p.set_requires_grad(false);
    }
    model_->eval();
  }
  ~FrozenModel() {
    size_t i = 0;
    for (auto& p : model_->parameters()) p.set_requires_grad(requires_grad_[i++]);
    model_->train(was_training_);
  }
  FrozenModel(const FrozenModel&) = delete;
  FrozenModel& operator=(const FrozenModel&) = delete;

 private:
  models::Classifier model_;
  bool was_training_;
  std::vector<bool> requires_grad_;
};

// Images N x H x W x C uint8 -> N x C x H x W float on the 0-255 scale.
torch::Tensor to_float_nchw(const torch::Tensor& images) {
  return images.permute({0, 3, 1, 2}).to(torch::kFloat);
}

// K masks (K x 1 x H x W) and patterns (K x C x H x W, 0-255) over B images (B x C x H x W,
// 0-255): the K * B triggered inputs in [0, 1], class-major.
torch::Tensor blend_all(const torch::Tensor& x, const torch::Tensor& masks,
                        const torch::Tensor& patterns) {
  torch::Tensor mixed = (1 - masks).unsqueeze(1) * x.unsqueeze(0) + (masks * patterns).unsqueeze(1);
  return to_memory_format(mixed.flatten(0, 1).div(255.0));
}

}  // namespace

nlohmann::json NeuralCleanseOptions::to_json() const {
  return {{"epochs", epochs},
          {"steps_per_epoch", steps_per_epoch},
          {"batch_size", batch_size},
          {"lr", lr},
          {"init_cost", init_cost},
          {"cost_multiplier", cost_multiplier},
          {"patience", patience},
          {"early_stop_patience", early_stop_patience},
          {"success_threshold", success_threshold},
          {"seed", seed}};
}

nlohmann::json ReversedTrigger::to_json() const {
  return {{"class", target},    {"reached", reached}, {"norm", norm},
          {"success", success}, {"epochs", epochs},   {"cost", cost}};
}

torch::Tensor stamp_reversed(const torch::Tensor& images, const torch::Tensor& mask,
                             const torch::Tensor& pattern) {
  const torch::Device device = images.device();
  const torch::Tensor m = mask.to(device).view({1, 1, mask.size(0), mask.size(1)});
  const torch::Tensor p = pattern.to(device).permute({2, 0, 1}).unsqueeze(0);
  return blend_all(to_float_nchw(images), m, p);
}

double reversed_trigger_success(const models::Classifier& model, const ReversedTrigger& trigger,
                                const data::Dataset& images, int64_t batch_size) {
  const torch::Tensor keep = images.labels.ne(trigger.target).nonzero().flatten();
  if (keep.numel() == 0) return 0;
  const torch::Tensor rows = images.images.index_select(0, keep.to(images.images.device()));
  const bool was_training = model->is_training();
  model->eval();
  torch::InferenceMode guard;
  AutocastScope autocast(rows.device());
  int64_t hits = 0;
  for (int64_t start = 0; start < rows.size(0); start += batch_size) {
    const torch::Tensor batch = rows.slice(0, start, std::min(rows.size(0), start + batch_size));
    const torch::Tensor predicted =
        model->forward(stamp_reversed(batch, trigger.mask, trigger.pattern)).logits.argmax(1);
    hits += predicted.eq(trigger.target).sum().item<int64_t>();
  }
  model->train(was_training);
  return 100.0 * static_cast<double>(hits) / static_cast<double>(rows.size(0));
}

std::vector<ReversedTrigger> reverse_triggers(
    const models::Classifier& model, int64_t num_classes, const data::Dataset& optimise,
    const data::Dataset& holdout, const NeuralCleanseOptions& o,
    const std::function<void(const ReversedTrigger&)>& on_class_done) {
  if (optimise.size() == 0) throw UserError("the scan has no clean images to optimise on");
  if (holdout.size() == 0) throw UserError("the scan has no held-out clean images");
  if (o.epochs < 1 || o.steps_per_epoch < 1 || o.batch_size < 1 || o.patience < 1 ||
      o.early_stop_patience < 1) {
    throw UserError("scan epochs, steps, batch size and patiences must be >= 1");
  }
  if (!(o.lr > 0) || !(o.init_cost > 0) || !(o.cost_multiplier > 1)) {
    throw UserError(
        "Neural Cleanse: the learning rate and initial cost must be > 0, the cost multiplier > 1");
  }
  if (!(o.success_threshold > 0 && o.success_threshold <= 1)) {
    throw UserError("Neural Cleanse: the success threshold must be in (0, 1]");
  }
  const int64_t K = num_classes, C = optimise.channels(), H = optimise.height(),
                W = optimise.width();
  const torch::Device device = o.device;
  FrozenModel frozen(model);

  const data::Dataset opt = optimise.to(device);
  const data::Dataset held = holdout.to(device);
  const int64_t n = opt.size();
  const int64_t batch = std::min(o.batch_size, n);

  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  // The paper code starts from uniform random masks and patterns.
  torch::Tensor mask_raw =
      unsquash(torch::rand({K, 1, H, W}, generator, torch::TensorOptions().dtype(torch::kFloat)));
  torch::Tensor pattern_raw =
      unsquash(torch::rand({K, C, H, W}, generator, torch::TensorOptions().dtype(torch::kFloat)));
  torch::Tensor order = torch::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
  int64_t cursor = 0;
  torch::Tensor mask_m = torch::zeros_like(mask_raw), mask_v = torch::zeros_like(mask_raw);
  torch::Tensor pattern_m = torch::zeros_like(pattern_raw),
                pattern_v = torch::zeros_like(pattern_raw);
  torch::Tensor best_mask = squash(mask_raw).clone(), best_pattern = squash(pattern_raw) * 255;
  std::vector<ClassSchedule> schedule(static_cast<size_t>(K));
  int start_epoch = 0;

  if (o.state) {
    if (auto saved = o.state->load(o.state_key)) {
      std::map<std::string, torch::Tensor> t(saved->extra_tensors.begin(),
                                             saved->extra_tensors.end());
      const std::string source = o.state->file(o.state_key).string();
      auto get = [&](const char* name, const torch::Tensor& like) {
        auto it = t.find(name);
        if (it == t.end() || !it->second.sizes().equals(like.sizes())) {
          throw UserError("state file '" + source + "': no '" + name +
                          "' of the right shape; it is from another scan (delete it to redo)");
        }
        return it->second.to(like.scalar_type());
      };
      mask_raw = get("mask_raw", mask_raw);
      pattern_raw = get("pattern_raw", pattern_raw);
      mask_m = get("mask_m", mask_m);
      mask_v = get("mask_v", mask_v);
      pattern_m = get("pattern_m", pattern_m);
      pattern_v = get("pattern_v", pattern_v);
      best_mask = get("best_mask", best_mask);
      best_pattern = get("best_pattern", best_pattern);
      order = get("order", order);
      generator.set_state(saved->generator);
      cursor = saved->extra.at("cursor").get<int64_t>();
      const nlohmann::json& classes = saved->extra.at("classes");
      if (static_cast<int64_t>(classes.size()) != K) {
        throw UserError("state file '" + source + "' holds another number of classes");
      }
      for (int64_t k = 0; k < K; ++k) schedule[k] = ClassSchedule::from_json(classes[k]);
      start_epoch = saved->epoch;
    }
  }
  mask_raw = mask_raw.to(device);
  pattern_raw = pattern_raw.to(device);
  mask_m = mask_m.to(device);
  mask_v = mask_v.to(device);
  pattern_m = pattern_m.to(device);
  pattern_v = pattern_v.to(device);

  auto trigger_of = [&](int64_t k) {
    const ClassSchedule& s = schedule[static_cast<size_t>(k)];
    ReversedTrigger r;
    r.target = k;
    r.reached = std::isfinite(s.best_norm);
    r.epochs = s.epochs;
    r.cost = s.cost;
    if (r.reached) {
      r.mask = best_mask[k][0].clone();
      r.pattern = best_pattern[k].permute({1, 2, 0}).contiguous();
      r.norm = s.best_norm;
      r.success = s.best_success;
    } else {
      r.mask = squash(mask_raw[k][0]).detach().cpu();
      r.pattern = (squash(pattern_raw[k]) * 255).permute({1, 2, 0}).detach().cpu().contiguous();
      r.norm = r.mask.sum().item<double>();
      r.success = reversed_trigger_success(model, r, held, o.eval_batch_size);
    }
    return r;
  };

  Progress progress("scan", o.epochs, o.steps_per_epoch, o.quiet);
  const torch::Tensor opt_labels = opt.labels;
  for (int epoch = start_epoch; epoch < o.epochs; ++epoch) {
    std::vector<int64_t> active;
    for (int64_t k = 0; k < K; ++k) {
      if (!schedule[k].done) active.push_back(k);
    }
    if (active.empty()) break;
    const int64_t a = static_cast<int64_t>(active.size());
    const torch::Tensor A = torch::tensor(active, torch::kLong).to(device);
    std::vector<double> costs;
    for (int64_t k : active) costs.push_back(schedule[k].cost);
    const torch::Tensor cost = torch::tensor(costs, torch::kDouble).to(device, torch::kFloat);
    torch::Tensor hits =
        torch::zeros({a}, torch::TensorOptions().dtype(torch::kLong).device(device));
    torch::Tensor counted = torch::zeros_like(hits);
    // The epoch's mean loss per class, summed on the device (read once, at the epoch's end).
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device));

    for (int64_t step = 0; step < o.steps_per_epoch; ++step) {
      if (cursor + batch > n) {
        order = torch::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
        cursor = 0;
      }
      const torch::Tensor rows = order.slice(0, cursor, cursor + batch).to(device);
      cursor += batch;
      const torch::Tensor x = to_float_nchw(opt.images.index_select(0, rows));
      const torch::Tensor labels = opt_labels.index_select(0, rows);

      torch::Tensor mask_leaf = mask_raw.index_select(0, A).detach().requires_grad_(true);
      torch::Tensor pattern_leaf = pattern_raw.index_select(0, A).detach().requires_grad_(true);
      const torch::Tensor masks = squash(mask_leaf);
      const torch::Tensor patterns = squash(pattern_leaf) * 255;
      torch::Tensor logits;
      {
        AutocastScope autocast(device);
        logits = model->forward(blend_all(x, masks, patterns)).logits;
      }
      logits = logits.to(torch::kFloat);
      const torch::Tensor targets = A.repeat_interleave(batch);
      // An image of the target class itself says nothing about the trigger.
      const torch::Tensor valid = labels.unsqueeze(0).ne(A.unsqueeze(1)).to(torch::kFloat);
      const torch::Tensor ce =
          torch::nn::functional::cross_entropy(
              logits, targets,
              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
              .view({a, batch});
      const torch::Tensor valid_count = valid.sum(1);
      const torch::Tensor ce_mean = (ce * valid).sum(1) / valid_count.clamp_min(1);
      const torch::Tensor norms = masks.sum({1, 2, 3});
      const torch::Tensor loss = (ce_mean + cost * norms).sum();
      loss.backward();
      loss_sum += loss.detach() / static_cast<double>(a);
      {
        torch::NoGradGuard no_grad;
        const torch::Tensor success =
            (logits.argmax(1).view({a, batch}).eq(A.unsqueeze(1)).to(torch::kFloat) * valid).sum(1);
        hits += success.to(torch::kLong);
        counted += valid_count.to(torch::kLong);
        // Adam with per-class step counts (every active class steps together).
        std::vector<double> c1, c2;
        for (int64_t k : active) {
          const double t = static_cast<double>(++schedule[k].adam_steps);
          c1.push_back(1 - std::pow(kAdamBeta1, t));
          c2.push_back(1 - std::pow(kAdamBeta2, t));
        }
        const torch::Tensor bias1 = torch::tensor(c1, torch::kDouble).to(device, torch::kFloat);
        const torch::Tensor bias2 = torch::tensor(c2, torch::kDouble).to(device, torch::kFloat);
        auto adam = [&](torch::Tensor& raw, torch::Tensor& m, torch::Tensor& v,
                        const torch::Tensor& grad) {
          const std::vector<int64_t> shape = {a, 1, 1, 1};
          torch::Tensor mk = m.index_select(0, A).mul_(kAdamBeta1).add_(grad, 1 - kAdamBeta1);
          torch::Tensor vk =
              v.index_select(0, A).mul_(kAdamBeta2).addcmul_(grad, grad, 1 - kAdamBeta2);
          const torch::Tensor update =
              (mk / bias1.view(shape)) / ((vk / bias2.view(shape)).sqrt_().add_(kAdamEps));
          m.index_copy_(0, A, mk);
          v.index_copy_(0, A, vk);
          raw.index_copy_(0, A, raw.index_select(0, A).sub_(update, o.lr));
        };
        adam(mask_raw, mask_m, mask_v, mask_leaf.grad());
        adam(pattern_raw, pattern_m, pattern_v, pattern_leaf.grad());
      }
      if (device.is_cpu()) {
        progress.step(
            epoch, step + 1, loss.item<double>() / static_cast<double>(a),
            100.0 * hits.sum().item<double>() / std::max<double>(1, counted.sum().item<double>()));
      }
      if (stop_requested()) {
        // The state saved at the last epoch's end continues bit for bit; this epoch is redone.
        const int signal_number = stop_signal();
        throw Interrupted(
            "scan stopped by " + signal_name(signal_number) + " in epoch " +
                std::to_string(epoch + 1) +
                (o.state ? "; its state is saved in " + o.state->dir().string() : std::string()),
            signal_number);
      }
    }

    // The epoch's end: new best masks (checked on held-out images), lambda, early stops.
    const torch::Tensor success =
        (hits.to(torch::kDouble) / counted.to(torch::kDouble).clamp_min(1)).cpu();
    const torch::Tensor current_masks = squash(mask_raw).detach();
    const torch::Tensor current_norms = current_masks.sum({1, 2, 3}).cpu();
    std::vector<int64_t> finished;
    for (int64_t i = 0; i < a; ++i) {
      const int64_t k = active[i];
      ClassSchedule& s = schedule[k];
      const double train_success = success[i].item<double>();
      const double norm = current_norms[k].item<double>();
      if (train_success >= o.success_threshold && norm < s.best_norm) {
        ReversedTrigger candidate;
        candidate.target = k;
        candidate.mask = current_masks[k][0].cpu();
        candidate.pattern =
            (squash(pattern_raw[k]) * 255).detach().permute({1, 2, 0}).cpu().contiguous();
        const double held_success =
            reversed_trigger_success(model, candidate, held, o.eval_batch_size);
        if (held_success >= 100.0 * o.success_threshold) {
          s.best_norm = norm;
          s.best_success = held_success;
          best_mask[k][0].copy_(candidate.mask);
          best_pattern[k].copy_(candidate.pattern.permute({2, 0, 1}));
        }
      }
      s.end_epoch(train_success, o);
      if (s.done) finished.push_back(k);
    }
    if (o.state) {
      train::LoopState state;
      state.epoch = epoch + 1;
      state.generator = generator.get_state();
      state.extra_tensors = {{"mask_raw", mask_raw.cpu()},
                             {"pattern_raw", pattern_raw.cpu()},
                             {"mask_m", mask_m.cpu()},
                             {"mask_v", mask_v.cpu()},
                             {"pattern_m", pattern_m.cpu()},
                             {"pattern_v", pattern_v.cpu()},
                             {"best_mask", best_mask},
                             {"best_pattern", best_pattern},
                             {"order", order}};
      nlohmann::json classes = nlohmann::json::array();
      for (const auto& s : schedule) classes.push_back(s.to_json());
      state.extra = {{"cursor", cursor}, {"classes", classes}};
      o.state->save(o.state_key, state);
    }
    std::string summary = std::to_string(a - static_cast<int64_t>(finished.size())) + "/" +
                          std::to_string(K) + " classes active";
    progress.end_epoch(epoch, loss_sum.item<double>() / static_cast<double>(o.steps_per_epoch),
                       100.0 * success.mean().item<double>(), summary);
    if (on_class_done) {
      for (int64_t k : finished) on_class_done(trigger_of(k));
    }
  }

  std::vector<ReversedTrigger> results;
  for (int64_t k = 0; k < K; ++k) results.push_back(trigger_of(k));
  return results;
}

std::string anomaly_scale_name(AnomalyScale scale) {
  return scale == AnomalyScale::kLog ? "log" : "linear";
}

double AnomalyResult::flag_below(double threshold) const {
  const double line = median - threshold * 1.4826 * mad;
  return scale == AnomalyScale::kLog ? std::exp(line) : line;
}

AnomalyResult anomaly_index(const std::vector<double>& raw_norms, double threshold,
                            AnomalyScale scale) {
  if (raw_norms.size() < 3) {
    throw UserError("the MAD outlier test needs at least 3 classes, the model has " +
                    std::to_string(raw_norms.size()));
  }
  std::vector<double> norms = raw_norms;
  if (scale == AnomalyScale::kLog) {
    // A mask's norm is positive (tanh keeps every pixel above 0); the floor only guards log(0).
    for (double& x : norms) x = std::log(std::max(x, 1e-6));
  }
  auto median_of = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t h = v.size() / 2;
    return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
  };
  AnomalyResult r;
  r.scale = scale;
  r.median = median_of(norms);
  std::vector<double> deviations;
  for (double x : norms) deviations.push_back(std::abs(x - r.median));
  r.mad = median_of(deviations);
  // 1.4826: the MAD of a normal distribution times this is its standard deviation.
  const double spread = 1.4826 * r.mad;
  for (double x : norms) {
    const double d = r.median - x;
    // All norms equal to the median's (MAD 0): no class stands out, unless it differs at all.
    r.index.push_back(spread > 0 ? d / spread : (d == 0 ? 0.0 : std::copysign(1e9, d)));
  }
  for (size_t k = 0; k < norms.size(); ++k) {
    if (r.index[k] > threshold) r.flagged.push_back(static_cast<int64_t>(k));
  }
  std::sort(r.flagged.begin(), r.flagged.end(),
            [&](int64_t x, int64_t y) { return r.index[x] > r.index[y]; });
  return r;
}

}  // namespace nad::defenses
