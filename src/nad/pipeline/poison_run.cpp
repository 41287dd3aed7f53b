#include <ATen/Parallel.h>

#include <sstream>

#include "nad/attacks/sample_grid.h"
#include "nad/io/json.h"
#include "nad/io/npy.h"
#include "nad/io/png.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

namespace {

namespace fs = std::filesystem;

// Class folders are the label, zero-padded so that their sorted order is the label order
// (the folder dataset numbers classes in sorted folder order).
std::vector<std::string> class_folder_names(int64_t num_classes) {
  const size_t width = std::to_string(std::max<int64_t>(0, num_classes - 1)).size();
  std::vector<std::string> names;
  for (int64_t k = 0; k < num_classes; ++k) {
    std::string name = std::to_string(k);
    names.push_back(std::string(width - name.size(), '0') + name);
  }
  return names;
}

// root/<class>/<row>.png for every row, encoded in parallel. Only classes with images get a
// folder (the folder dataset refuses empty ones).
void write_split(const fs::path& root, const data::Dataset& split,
                 const std::vector<std::string>& folders) {
  const torch::Tensor images = split.images.to(torch::kCPU).contiguous();
  const torch::Tensor labels = split.labels.to(torch::kCPU).contiguous();
  const torch::Tensor present = std::get<0>(at::_unique(labels));
  for (int64_t k = 0; k < present.size(0); ++k) {
    ensure_directory(root / folders[static_cast<size_t>(present[k].item<int64_t>())]);
  }
  const int64_t* label = labels.data_ptr<int64_t>();
  at::parallel_for(0, split.size(), 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      io::write_png(root / folders[static_cast<size_t>(label[i])] / (std::to_string(i) + ".png"),
                    images[i]);
    }
  });
}

std::vector<int64_t> to_vector(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kCPU).to(torch::kLong).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

}  // namespace

nlohmann::json run_poison(const PoisonConfig& config) {
  if (config.common.attack.name == "none" || config.common.attack.name.empty()) {
    throw UserError("nad poison needs an " + flag::attack);
  }
  if (config.pairs_per_row < 1) throw UserError(flag::sample_pairs + " must be at least 1");
  if (config.format != "png" && config.format != "npy") {
    throw UserError(flag::format + " must be png or npy, not '" + config.format + "'");
  }
  RunContext context = open_run(config.common, /*prepares_attack=*/true);
  const data::DatasetPair& data = context.data;
  CommonConfig common = config.common;
  const std::string prep_arch = data.train.channels() == 1 ? "mnist-cnn" : "wrn-16-1";
  const nlohmann::json prep_record =
      prepare_attack(context, common.attack, config.prep, prep_arch, common);
  const attacks::Attack& attack = *context.attack;

  const attacks::PoisonedSet poisoned = attack.poison(data.train, config.common.seed);
  context.log("poisoned " + std::to_string(poisoned.indices.size(0)) + " of " +
              std::to_string(data.train.size()) + " training images (" + config.common.attack.name +
              ")");
  if (poisoned.noise_indices.size(0) > 0) {
    context.log("noise mode: " + std::to_string(poisoned.noise_indices.size(0)) +
                " more warped with noise, labels kept");
  }

  const std::vector<std::string> folders = class_folder_names(data.num_classes());
  std::string layout;
  if (config.format == "png") {
    const attacks::TriggeredSet triggered = attack.triggered_test_set(data.test);
    context.log("writing " +
                std::to_string(data.train.size() + data.test.size() + triggered.data.size()) +
                " PNG files");
    write_split(context.out / "train", poisoned.data, folders);
    write_split(context.out / "test", data.test, folders);
    // What --triggered-test reads: the test images nad measures ASR on, under their true label.
    write_split(context.out / "test_triggered", triggered.data, folders);
    layout =
        "train/<class folder>/<row>.png (poisoned), test/<class folder>/<row>.png "
        "(clean); <row> is the index in the original split; test_triggered/<true label "
        "folder>/<n>.png: the triggered test images nad measures ASR on (" +
        flag::triggered_test + " reads it)";
  } else {
    // Everything another toolkit needs to score a model as nad does, the ASR set included.
    const attacks::TriggeredSet triggered = attack.triggered_test_set(data.test);
    const std::vector<std::pair<std::string, torch::Tensor>> arrays = {
        {"train_images", poisoned.data.images},
        {"train_labels", poisoned.data.labels},
        {"clean_train_images", data.train.images},
        {"clean_train_labels", data.train.labels},
        {"test_images", data.test.images},
        {"test_labels", data.test.labels},
        {"test_triggered_images", triggered.data.images},
        {"test_triggered_labels", triggered.data.labels},
        {"test_triggered_targets", triggered.attack_targets}};
    context.log("writing " + std::to_string(arrays.size()) + " .npy files");
    for (const auto& [name, tensor] : arrays) {
      io::write_npy(context.out / (name + ".npy"), tensor);
    }
    layout =
        "NumPy arrays, images N x H x W x C uint8, labels int64: train_* (poisoned), "
        "clean_train_* (before poisoning), test_* (clean), test_triggered_* (the test images "
        "nad measures ASR on: triggered, true labels, and the attack's target per row)";
  }
  const std::vector<int64_t> indices = to_vector(poisoned.indices);
  nlohmann::json poisoned_json = {
      {"count", indices.size()},
      {"indices", indices},
      {"original_labels", to_vector(data.train.labels.index_select(0, poisoned.indices))},
      {"new_labels", to_vector(poisoned.data.labels.index_select(0, poisoned.indices))}};
  nlohmann::json classes = nlohmann::json::array();
  for (size_t k = 0; k < folders.size(); ++k) {
    classes.push_back({{"label", k}, {"folder", folders[k]}, {"name", data.class_names[k]}});
  }
  nlohmann::json manifest = {
      {"command", "poison"},
      {"dataset", data.name},
      {"attack", attack.options().to_json()},
      {"seed", config.common.seed},
      {"train_size", data.train.size()},
      {"test_size", data.test.size()},
      {"image",
       {{"height", data.train.height()},
        {"width", data.train.width()},
        {"channels", data.train.channels()}}},
      {"classes", classes},
      {"format", config.format},
      {"layout", layout},
      {"poisoned", poisoned_json},
      {"noise_mode",
       {{"count", poisoned.noise_indices.size(0)}, {"indices", to_vector(poisoned.noise_indices)}}},
      {"samples", "samples.png"}};
  if (!prep_record.is_null()) manifest["attack_prep"] = prep_record;
  io::write_json(context.out / "manifest.json", manifest);

  torch::Tensor grid =
      attacks::sample_grid(data.train, attack, data.num_classes(), config.pairs_per_row);
  io::write_png(context.out / "samples.png", grid);
  context.log("wrote " + (context.out / "manifest.json").string() + " and samples.png (" +
              std::to_string(grid.size(1)) + "x" + std::to_string(grid.size(0)) + ")");

  nlohmann::json summary = {{"poisoned", indices.size()},
                            {"noise_mode", poisoned.noise_indices.size(0)},
                            {"train_size", data.train.size()},
                            {"seconds", context.seconds()}};
  return summary;
}

}  // namespace nad::pipeline
