#include <cstdio>
#include <optional>
#include <sstream>

#include "nad/data/readers.h"
#include "nad/io/json.h"
#include "nad/io/npy.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

namespace fs = std::filesystem;

namespace {

// The images to classify, with their true labels where known.
struct PredictInput {
  torch::Tensor images;          // N x H x W x C uint8, CPU
  torch::Tensor labels;          // N int64, or undefined
  std::vector<std::string> ids;  // the first column: file (relative to --images) or row index
  std::vector<std::string> class_names;  // may be empty: classes are then numbered
  std::string source;
};

// RGB to grey as stb_image converts on decode, or grey to RGB by copying the channel.
torch::Tensor convert_channels(const torch::Tensor& images, int64_t channels) {
  if (images.size(3) == channels) return images;
  if (channels == 3) return images.expand({-1, -1, -1, 3}).contiguous();
  const torch::Tensor rgb = images.to(torch::kInt32);
  const torch::Tensor y =
      (rgb.select(3, 0) * 77 + rgb.select(3, 1) * 150 + rgb.select(3, 2) * 29).div(256, "floor");
  return y.to(torch::kUInt8).unsqueeze(3).contiguous();
}

PredictInput read_images_option(const PredictConfig& config) {
  const fs::path dir = config.images;
  if (!fs::is_directory(dir))
    throw UserError(flag::images + " " + config.images + ": no such folder");
  PredictInput input;
  const int image_size = config.common.dataset.image_size;
  if (data::has_image_files(dir)) {
    data::ImageFiles files = data::read_image_files(dir, image_size);
    input.images = files.images;
    for (const auto& file : files.files) input.ids.push_back(file.filename().string());
    input.source = flag::images + " " + config.images + " (" + std::to_string(files.files.size()) +
                   " images, no labels)";
  } else {
    // Class folders: the true labels are known, mapped as --clean-dir maps them.
    data::LabelledFolder folder = data::read_labelled_folder(dir, 0, image_size);
    input.images = folder.data.images;
    input.labels = folder.data.labels;
    input.class_names = folder.class_names;
    for (const auto& file : folder.files) {
      input.ids.push_back(fs::relative(file, dir).generic_string());
    }
    input.source = flag::images + " " + config.images + " (" + std::to_string(folder.files.size()) +
                   " images, labels by " + folder.mapping + ")";
  }
  return input;
}

}  // namespace

nlohmann::json run_predict(const PredictConfig& config) {
  const bool from_folder = !config.images.empty();
  if (from_folder == !config.common.dataset.name.empty()) {
    throw UserError("give the images to classify by " + flag::images + " DIR or by " +
                    flag::dataset + " (not both)");
  }
  if (config.split != "test" && config.split != "train") {
    throw UserError(flag::split + " must be test or train, not '" + config.split + "'");
  }
  check_model_file(config.model, flag::model);
  RunContext context;
  PredictInput input;
  models::LoadedModel loaded;
  if (from_folder) {
    context = open_run_folder(config.common);
    input = read_images_option(config);
    models::LoadOptions load = load_options(config.model_options);
    load.input_shape = {input.images.size(3), input.images.size(1), input.images.size(2)};
    load.device = context.device;
    loaded = models::load_checkpoint(config.model, load);
    record_loaded_model(context, flag::model, config.model, loaded);
    const auto& spec = loaded.spec;
    input.images = convert_channels(input.images, spec.in_channels);
    if (input.images.size(1) != spec.height || input.images.size(2) != spec.width) {
      throw UserError(flag::model + " " + config.model + " expects " + std::to_string(spec.width) +
                      "x" + std::to_string(spec.height) + " images, but those in " + config.images +
                      " are " + std::to_string(input.images.size(2)) + "x" +
                      std::to_string(input.images.size(1)) + " (" + flag::image_size + " " +
                      std::to_string(spec.height) + " resizes them)");
    }
    if (input.labels.defined() && input.labels.numel() > 0 &&
        input.labels.max().item<int64_t>() >= spec.num_classes) {
      throw UserError(flag::images + " " + config.images + ": a class folder is class " +
                      std::to_string(input.labels.max().item<int64_t>()) + ", but " + flag::model +
                      " has " + std::to_string(spec.num_classes) + " classes");
    }
  } else {
    context = open_run(config.common);
    loaded = load_model_for(config.model, context, flag::model, config.model_options);
    const data::Dataset& set = config.split == "train" ? context.data.train : context.data.test;
    input.images = set.images;
    input.labels = set.labels;
    input.class_names = context.data.class_names;
    for (int64_t i = 0; i < set.size(); ++i) input.ids.push_back(std::to_string(i));
    input.source = context.data.name + " " + config.split + " split (" +
                   std::to_string(set.size()) + " images)";
  }
  const int64_t num_classes = loaded.spec.num_classes;
  if (static_cast<int64_t>(input.class_names.size()) != num_classes) input.class_names.clear();
  auto class_name = [&](int64_t k) {
    return input.class_names.empty() ? std::to_string(k) : input.class_names[k];
  };
  context.log("classifying " + input.source);

  const torch::Tensor logits =
      train::predict_logits(loaded.model, input.images.to(context.device), context.eval_batch_size)
          .to(torch::kCPU);
  const torch::Tensor probabilities = torch::softmax(logits, 1);
  const auto [top_probability, predicted] = probabilities.max(1);
  const auto predicted_a = predicted.accessor<int64_t, 1>();
  const auto probability_a = top_probability.accessor<float, 1>();

  const bool labelled = input.labels.defined();
  const torch::Tensor labels =
      labelled ? input.labels.to(torch::kCPU).contiguous() : torch::empty({0}, torch::kLong);
  const auto labels_a = labels.accessor<int64_t, 1>();
  std::ostringstream csv;
  csv << (from_folder ? "file" : "index") << ",predicted,class,probability,label\n";
  for (size_t i = 0; i < input.ids.size(); ++i) {
    const int64_t k = predicted_a[static_cast<int64_t>(i)];
    char probability[32];
    std::snprintf(probability, sizeof probability, "%.6f", probability_a[static_cast<int64_t>(i)]);
    csv << io::csv_field(input.ids[i]) << ',' << k << ',' << io::csv_field(class_name(k)) << ','
        << probability << ',';
    if (labelled) csv << labels_a[static_cast<int64_t>(i)];
    csv << '\n';
  }
  write_text_atomic(context.out / "predictions.csv", csv.str());
  nlohmann::json files = {{"predictions", "predictions.csv"}};
  if (config.logits) {
    io::write_npy(context.out / "logits.npy", logits.contiguous());
    files["logits"] = "logits.npy";
  }

  const torch::Tensor counts = torch::bincount(predicted, {}, num_classes);
  nlohmann::json predicted_counts = nlohmann::json::object();
  for (int64_t k = 0; k < num_classes; ++k) {
    const int64_t count = counts[k].item<int64_t>();
    if (count > 0) predicted_counts[class_name(k)] = count;
  }
  nlohmann::json summary = {{"images", input.ids.size()},
                            {"source", input.source},
                            {"model", config.model},
                            {"arch", loaded.spec.arch},
                            {"predicted_counts", predicted_counts},
                            {"files", files},
                            {"seconds", context.seconds()}};
  std::optional<double> accuracy;
  if (labelled && input.labels.numel() > 0) {
    accuracy =
        100.0 * predicted.eq(labels).sum().item<double>() / static_cast<double>(labels.numel());
  }
  summary["accuracy"] = accuracy ? nlohmann::json(*accuracy) : nlohmann::json(nullptr);
  const nlohmann::json config_json = {
      {"command", "predict"},    {"common", config.common.to_json()},
      {"model", config.model},   {"model_options", config.model_options.to_json()},
      {"images", config.images}, {"split", config.split},
      {"logits", config.logits}};
  std::ostringstream report;
  report << "# nad predict\n\n`" << config.model << "` (" << loaded.spec.arch << ") on "
         << input.source << ": predictions.csv"
         << (config.logits ? ", logits.npy (float32, images x classes)" : "") << ".\n";
  if (accuracy) report << "\nAccuracy against the known labels: " << *accuracy << "%.\n";
  write_run_files(context, config_json, summary, {}, report.str());
  char line[128];
  if (accuracy) {
    std::snprintf(line, sizeof line, "%zu predictions, accuracy %.2f%%", input.ids.size(),
                  *accuracy);
  } else {
    std::snprintf(line, sizeof line, "%zu predictions", input.ids.size());
  }
  context.log(std::string(line) + " -> " + (context.out / "predictions.csv").string());
  return summary;
}

}  // namespace nad::pipeline
