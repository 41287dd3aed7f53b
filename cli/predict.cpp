#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_predict(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "predict",
      "classify a folder of images or a dataset split: predictions.csv (file or index, predicted "
      "class, its probability, the true label where known) and optionally logits.npy");
  auto config = std::make_shared<pipeline::PredictConfig>();
  add_common_options(*app, config->common);
  app->get_option(flag::dataset)->required(false);
  app->add_option(flag::model, config->model,
                  "checkpoint: nad's model.pt, a torch.save file or a BackdoorBench record")
      ->required();
  add_model_file_options(*app, config->model_options);
  app->add_option(flag::images, config->images,
                  "folder of images to classify: DIR/*.png|jpg (no labels), or DIR/<class>/* "
                  "(labels as for --clean-dir); instead of --dataset");
  app->add_option(flag::split, config->split, "with --dataset: test or train")
      ->capture_default_str()
      ->check(CLI::IsMember({"test", "train"}));
  app->add_flag(flag::logits, config->logits,
                "also write logits.npy (float32, images x classes, rows as in predictions.csv)");
  app->callback([config] { pipeline::run_predict(*config); });
}

}  // namespace nad::cli
