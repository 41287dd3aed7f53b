#include "nad/train/evaluate.h"

#include <cstdio>

#include "nad/data/augment.h"
#include "nad/util/compute.h"

namespace nad::train {

nlohmann::json Metrics::to_json() const {
  nlohmann::json j;
  j["clean_acc"] = clean_acc;
  j["asr"] = asr ? nlohmann::json(*asr) : nlohmann::json(nullptr);
  j["robust_acc"] = robust_acc ? nlohmann::json(*robust_acc) : nlohmann::json(nullptr);
  return j;
}

std::string Metrics::summary() const {
  char buffer[96];
  if (asr) {
    std::snprintf(buffer, sizeof buffer, "ACC %.2f%% ASR %.2f%% RA %.2f%%", clean_acc, *asr,
                  *robust_acc);
  } else {
    std::snprintf(buffer, sizeof buffer, "ACC %.2f%%", clean_acc);
  }
  return buffer;
}

torch::Tensor predict(const models::Classifier& model, const torch::Tensor& images,
                      int64_t batch_size) {
  const bool was_training = model->is_training();
  model->eval();
  torch::InferenceMode guard;
  AutocastScope autocast(images.device());
  std::vector<torch::Tensor> predictions;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    torch::Tensor batch = data::to_input(images.slice(0, start, start + batch_size));
    predictions.push_back(model->forward(batch).logits.argmax(1));
  }
  model->train(was_training);
  if (predictions.empty()) return torch::empty({0}, torch::kLong);
  return torch::cat(predictions);
}

namespace {
double percent_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.numel() == 0) return 0;
  return 100.0 * a.eq(b).sum().item<double>() / static_cast<double>(a.numel());
}
}  // namespace

double accuracy(const models::Classifier& model, const data::Dataset& set, int64_t batch_size) {
  return percent_equal(predict(model, set.images, batch_size), set.labels.to(set.images.device()));
}

Evaluator::Evaluator(const data::Dataset& test, const attacks::Attack* attack, torch::Device device,
                     int64_t batch_size)
    : batch_size_(batch_size) {
  clean_.images = test.images.to(device);
  clean_.labels = test.labels.to(device);
  if (attack) {
    attacks::TriggeredSet triggered = attack->triggered_test_set(test);
    has_attack_ = true;
    triggered_.images = triggered.data.images.to(device);
    triggered_.labels = triggered.data.labels.to(device);
    attack_targets_ = triggered.attack_targets.to(device);
  }
}

Metrics Evaluator::operator()(const models::Classifier& model) const {
  Metrics m;
  m.clean_acc = accuracy(model, clean_, batch_size_);
  if (has_attack_) {
    torch::Tensor predicted = predict(model, triggered_.images, batch_size_);
    m.asr = percent_equal(predicted, attack_targets_);
    m.robust_acc = percent_equal(predicted, triggered_.labels);
  }
  return m;
}

}  // namespace nad::train
