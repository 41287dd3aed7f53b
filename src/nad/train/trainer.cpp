#include "nad/train/trainer.h"

#include <chrono>
#include <cmath>

#include "nad/dist/process_group.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/progress.h"

namespace nad::train {

Schedule parse_schedule(const std::string& text) {
  if (text == "constant") return Schedule::kConstant;
  if (text == "step") return Schedule::kStep;
  if (text == "cosine") return Schedule::kCosine;
  if (text == "reference") return Schedule::kReference;
  throw UserError("--schedule must be constant, step, cosine or reference, not '" + text + "'");
}

std::string schedule_name(Schedule schedule) {
  switch (schedule) {
    case Schedule::kConstant:
      return "constant";
    case Schedule::kStep:
      return "step";
    case Schedule::kCosine:
      return "cosine";
    case Schedule::kReference:
      return "reference";
  }
  return "?";
}

nlohmann::json TrainOptions::to_json() const {
  return {{"epochs", epochs},
          {"batch_size", batch_size},
          {"lr", lr},
          {"momentum", momentum},
          {"weight_decay", weight_decay},
          {"nesterov", nesterov},
          {"schedule", schedule_name(schedule)},
          {"milestones", milestones},
          {"gamma", gamma},
          {"augment",
           {{"crop_padding", augment.crop_padding},
            {"horizontal_flip", augment.horizontal_flip},
            {"cutout_holes", augment.cutout_holes},
            {"cutout_length", augment.cutout_length},
            {"cutout_fill", data::cutout_fill_name(augment.cutout_fill)}}},
          {"seed", seed},
          {"device", device.str()}};
}

double lr_at(const TrainOptions& options, int epoch) {
  switch (options.schedule) {
    case Schedule::kConstant:
      return options.lr;
    case Schedule::kStep: {
      double lr = options.lr;
      for (int m : options.milestones) {
        if (epoch >= m) lr *= options.gamma;
      }
      return lr;
    }
    case Schedule::kCosine:
      return 0.5 * options.lr * (1 + std::cos(M_PI * epoch / std::max(1, options.epochs)));
    case Schedule::kReference:
      return epoch < 2 ? options.lr : options.lr * 0.1;
  }
  return options.lr;
}

LocalBatch local_batch(const torch::Tensor& augmented, const torch::Tensor& labels,
                       const torch::Tensor& rows) {
  LocalBatch batch;
  batch.global_rows = rows.size(0);
  const auto [begin, end] = dist::local_shard(batch.global_rows);
  batch.local_rows = end - begin;
  batch.inputs = data::to_input(augmented.slice(0, begin, end));
  batch.targets = labels.index_select(0, rows.slice(0, begin, end));
  return batch;
}

BatchTotals batch_totals(const LocalBatch& batch, const torch::Tensor& loss,
                         const torch::Tensor& logits) {
  const std::vector<double> sums =
      dist::all_reduce_sum({loss.item<double>() * static_cast<double>(batch.local_rows),
                            logits.argmax(1).eq(batch.targets).sum().item<double>()});
  return {sums[0], static_cast<int64_t>(sums[1]), sums[0] / batch.global_rows};
}

std::vector<EpochRecord> train_model(const models::Classifier& model, const data::Dataset& data,
                                     const TrainOptions& options, const EpochEvaluation& evaluate,
                                     const ExtraLoss& extra_loss) {
  if (options.epochs < 0) throw UserError("--epochs must be >= 0");
  if (options.batch_size < 2) throw UserError("--batch-size must be at least 2");
  if (!(options.lr > 0)) throw UserError("--lr must be positive");
  const torch::Device device = options.device;
  model->to(device);
  const torch::Tensor images = data.images.to(device);
  const torch::Tensor labels = data.labels.to(device);
  const int64_t n = data.size();
  const int64_t steps = (n + options.batch_size - 1) / options.batch_size;

  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(options.lr)
                                                       .momentum(options.momentum)
                                                       .nesterov(options.nesterov)
                                                       .weight_decay(options.weight_decay));
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  Progress progress(options.label, options.epochs, steps, options.quiet);
  std::vector<EpochRecord> records;
  // Data parallel: every rank starts from rank 0's weights and draws the same permutation and
  // augmentation (same seed), then trains on its own rows of each global batch.
  dist::broadcast_module(*model);
  const std::vector<torch::Tensor> parameters = model->parameters();

  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    const double lr = lr_at(options, epoch);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
    }
    model->train();
    torch::Tensor order = torch::randperm(n, generator, torch::kLong).to(device);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t step = 0; step < steps; ++step) {
      torch::Tensor rows =
          order.slice(0, step * options.batch_size, (step + 1) * options.batch_size);
      // BatchNorm cannot train on a single sample; a lone leftover row waits for next epoch.
      if (rows.size(0) < 2) continue;
      torch::Tensor batch =
          data::augment_batch(images.index_select(0, rows), options.augment, generator);
      const LocalBatch local = local_batch(batch, labels, rows);
      const torch::Tensor& inputs = local.inputs;
      const torch::Tensor& targets = local.targets;

      models::ModelOutput output;
      torch::Tensor loss;
      {
        AutocastScope autocast(device);
        output = model->forward(inputs);
        loss = torch::cross_entropy_loss(output.logits.to(torch::kFloat), targets);
        if (extra_loss) loss = loss + extra_loss(inputs, output);
      }
      optimizer.zero_grad();
      loss.backward();
      dist::average_gradients(parameters, local.share());
      optimizer.step();
      if (options.after_step) options.after_step(model);

      const BatchTotals totals = batch_totals(local, loss, output.logits);
      const double loss_value = totals.mean_loss;
      if (!std::isfinite(loss_value)) {
        throw DivergedError(options.label + ": training diverged (loss " +
                            std::to_string(loss_value) + ") at epoch " + std::to_string(epoch + 1) +
                            " with lr " + std::to_string(lr) + "; lower --lr");
      }
      loss_sum += totals.loss_sum;
      correct += totals.correct;
      seen += local.global_rows;
      progress.step(epoch, step + 1, loss_sum / seen, 100.0 * correct / seen);
    }

    EpochRecord record;
    record.phase = options.label;
    record.epoch = epoch + 1;
    record.lr = lr;
    record.loss = seen ? loss_sum / seen : 0;
    record.train_acc = seen ? 100.0 * correct / seen : 0;
    // Without --sync-bn each rank's BatchNorm statistics followed its own shard; rank 0's are
    // kept, so that every rank evaluates and saves the same model.
    dist::broadcast_module(*model);
    std::string summary;
    if (evaluate) {
      if (std::optional<Metrics> metrics = evaluate(model)) {
        record.metrics = *metrics;
        summary = metrics->summary();
      }
    }
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.end_epoch(epoch, record.loss, record.train_acc, summary);
    records.push_back(record);
    if (options.keep_going && !options.keep_going(model, epoch)) break;
  }
  return records;
}

}  // namespace nad::train
