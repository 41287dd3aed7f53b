#include "nad/train/evaluate.h"

#include <algorithm>
#include <cstdio>

#include "nad/data/augment.h"
#include "nad/dist/process_group.h"
#include "nad/util/compute.h"
#include "nad/util/threads.h"

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

namespace {

// The logits (float32) or, with `argmax`, the predicted labels of images[begin, end), in batches,
// in the calling thread.
torch::Tensor predict_range(const models::Classifier& model, const torch::Tensor& images,
                            int64_t begin, int64_t end, int64_t batch_size, bool argmax) {
  torch::InferenceMode guard;
  AutocastScope autocast(images.device());
  std::vector<torch::Tensor> outputs;
  for (int64_t start = begin; start < end; start += batch_size) {
    torch::Tensor batch = data::to_input(images.slice(0, start, std::min(end, start + batch_size)));
    torch::Tensor logits = model->forward(batch).logits;
    outputs.push_back(argmax ? logits.argmax(1) : logits.to(torch::kFloat));
  }
  if (outputs.empty()) return argmax ? torch::empty({0}, torch::kLong) : torch::Tensor();
  return torch::cat(outputs);
}

torch::Tensor predict_all(const models::Classifier& model, const torch::Tensor& images,
                          int64_t batch_size, bool argmax) {
  const bool was_training = model->is_training();
  model->eval();
  const int64_t count = images.size(0);
  const int64_t batches = (count + batch_size - 1) / batch_size;
  const int64_t workers =
      images.device().is_cpu() ? std::min<int64_t>(single_thread_workers(), batches) : 1;
  torch::Tensor out;
  if (workers <= 1) {
    out = predict_range(model, images, 0, count, batch_size, argmax);
  } else {
    // Small convolutions split poorly over cores; whole batches split perfectly, so on the
    // CPU each core runs its share of the batches single-threaded (the model is only read in
    // eval mode). The batches are the same as with one thread.
    std::vector<torch::Tensor> parts(static_cast<size_t>(workers));
    run_single_threaded(workers, [&](int64_t w) {
      const int64_t begin = std::min(count, batches * w / workers * batch_size);
      const int64_t end = std::min(count, batches * (w + 1) / workers * batch_size);
      parts[static_cast<size_t>(w)] = predict_range(model, images, begin, end, batch_size, argmax);
    });
    std::vector<torch::Tensor> filled;
    for (auto& part : parts) {
      if (part.defined()) filled.push_back(part);
    }
    out = torch::cat(filled);
  }
  model->train(was_training);
  return out;
}

}  // namespace

torch::Tensor predict(const models::Classifier& model, const torch::Tensor& images,
                      int64_t batch_size) {
  return predict_all(model, images, batch_size, /*argmax=*/true);
}

torch::Tensor predict_logits(const models::Classifier& model, const torch::Tensor& images,
                             int64_t batch_size) {
  if (images.size(0) == 0) throw std::invalid_argument("predict_logits: no images");
  return predict_all(model, images, batch_size, /*argmax=*/false);
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

Evaluator::Evaluator(const data::Dataset& test, const data::TriggeredSet* triggered,
                     torch::Device device, int64_t batch_size)
    : batch_size_(batch_size) {
  clean_.images = test.images.to(device);
  clean_.labels = test.labels.to(device);
  if (triggered) {
    has_attack_ = true;
    triggered_.images = triggered->data.images.to(device);
    triggered_.labels = triggered->data.labels.to(device);
    attack_targets_ = triggered->attack_targets.to(device);
  }
}

// Each rank measures its shard of the test sets; the counts are summed over ranks.
Metrics Evaluator::operator()(const models::Classifier& model) const {
  auto count_equal = [](const torch::Tensor& a, const torch::Tensor& b) {
    return a.numel() == 0 ? 0.0 : a.eq(b).sum().item<double>();
  };
  const auto [clean_begin, clean_end] = dist::local_shard(clean_.size());
  std::vector<double> counts = {
      count_equal(predict(model, clean_.images.slice(0, clean_begin, clean_end), batch_size_),
                  clean_.labels.slice(0, clean_begin, clean_end)),
      0, 0};
  if (has_attack_) {
    const auto [begin, end] = dist::local_shard(triggered_.size());
    torch::Tensor predicted = predict(model, triggered_.images.slice(0, begin, end), batch_size_);
    counts[1] = count_equal(predicted, attack_targets_.slice(0, begin, end));
    counts[2] = count_equal(predicted, triggered_.labels.slice(0, begin, end));
  }
  counts = dist::all_reduce_sum(counts);
  auto percent = [](double hits, int64_t total) {
    return total == 0 ? 0.0 : 100.0 * hits / static_cast<double>(total);
  };
  Metrics m;
  m.clean_acc = percent(counts[0], clean_.size());
  if (has_attack_) {
    m.asr = percent(counts[1], triggered_.size());
    m.robust_acc = percent(counts[2], triggered_.size());
  }
  return m;
}

}  // namespace nad::train
