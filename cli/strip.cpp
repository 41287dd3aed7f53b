#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_strip(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "strip",
      "STRIP input-level backdoor detection: calibrate an entropy threshold on clean inputs, or "
      "flag the images of a folder with one");
  app->footer(
      "Entropy (the paper's code): each input is superimposed with N clean overlays (x' = "
      "min(x + overlay, 255) on the 0-255 scale, in float); its STRIP entropy is the mean of the "
      "N blends' Shannon entropies, in bits. --superimpose blend (x' = 0.5 x + 0.5 overlay) and " +
      flag::entropy +
      " of-mean (the entropy of the mean softmax) are the alternatives. Inputs below "
      "the threshold are flagged; flag mode uses the method the threshold file was calibrated "
      "with.\n"
      "Calibrate: nad strip --model CKPT --dataset D [--attack ...] --out DIR writes "
      "strip.json, overlays.png, entropy.png, entropies.csv.\n"
      "Flag: nad strip --threshold-file DIR/strip.json --images FOLDER --model CKPT --out DIR2 "
      "writes flags.csv and exits 1 when any image is flagged (0 when none; 2 on errors).");
  auto config = std::make_shared<pipeline::StripConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  auto superimpose = std::make_shared<std::string>(config->method.superimpose_name());
  auto entropy = std::make_shared<std::string>(config->method.entropy_name());
  add_common_options(*app, config->common);
  // Flagging needs no dataset: the overlays come from the threshold file's folder.
  app->get_option(flag::dataset)
      ->required(false)
      ->description(
          "calibration: mnist | fashion-mnist | cifar10 | cifar100 | gtsrb | tiny-imagenet | "
          "folder");
  add_clean_dir_options(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  app->add_option(flag::model, config->model, "checkpoint: nad's model.pt or a torch.save file")
      ->required();
  add_model_file_options(*app, config->model_options);
  app->add_option(flag::clean_ratio, config->clean_ratio,
                  "calibration: fraction of the clean training set the defender has; the "
                  "overlays are drawn from it with the seed")
      ->capture_default_str();
  app->add_option(flag::overlays, config->overlays,
                  "calibration: clean images blended with each input (N)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option(flag::superimpose, *superimpose,
                  "calibration: blend (0.5 x + 0.5 overlay) or add (min(x + overlay, 255), the "
                  "paper's code)")
      ->capture_default_str()
      ->check(CLI::IsMember({"add", "blend"}));
  app->add_option(flag::entropy, *entropy,
                  "calibration: of-mean (the entropy of the mean softmax) or mean (of the N "
                  "blends' entropies, the paper's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "of-mean"}));
  app->add_option(flag::frr, config->frr,
                  "calibration: share of clean test inputs the threshold may flag (the threshold "
                  "is that quantile of their entropies)")
      ->capture_default_str();
  app->add_option(flag::test_images, config->test_images,
                  "calibration: clean and triggered test images measured, drawn with the seed "
                  "(0: all; the paper used 2000)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option(flag::threshold_file, config->threshold_file,
                  "flag mode: the strip.json of a calibration run (its overlays.png beside it)");
  app->add_option(flag::images, config->images,
                  "flag mode: folder of images (.png, .jpg, .jpeg, .bmp, .ppm) to check");
  app->callback([config, label_mode, superimpose, entropy] {
    finish_attack_options(config->common.attack, *label_mode);
    config->method.superimpose = defenses::parse_superimpose(*superimpose, flag::superimpose);
    config->method.entropy = defenses::parse_strip_entropy(*entropy, flag::entropy);
    const nlohmann::json summary = pipeline::run_strip(*config);
    // A pipeline can gate on the exit code: 1 when an image was flagged as triggered.
    if (summary.value("flagged", 0) > 0) set_exit_code(1);
  });
}

}  // namespace nad::cli
