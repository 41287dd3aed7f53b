#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_scan(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "scan",
      "is this model backdoored? Neural Cleanse (Wang et al., S&P 2019) reverses each class's "
      "smallest trigger on clean data and flags classes whose trigger is an outlier; no attack "
      "knowledge is used (attack options only report whether the flagged class is the target)");
  auto config = std::make_shared<pipeline::ScanConfig>();
  auto label_mode = std::make_shared<std::string>("all2one");
  add_common_options(*app, config->common);
  add_clean_dir_options(*app, config->common);
  add_resume_option(*app, config->common);
  add_attack_options(*app, config->common.attack, *label_mode);
  app->add_option(flag::model, config->model,
                  "checkpoint to scan: nad's model.pt or a torch.save file")
      ->required();
  add_model_file_options(*app, config->model_options);
  app->add_option(flag::clean_ratio, config->clean_ratio,
                  "fraction of the clean training set the defender has")
      ->capture_default_str();
  app->add_option(flag::clean_indices, config->clean_indices,
                  "use the clean subset of an earlier run (its clean_indices.txt)");
  add_scan_options(*app, config->scan, "--");
  app->add_flag(flag::fail_if_flagged, config->fail_if_flagged,
                "exit with code 1 when a class is flagged (for deployment pipelines)");
  app->callback([config, label_mode] {
    finish_attack_options(config->common.attack, *label_mode);
    const nlohmann::json summary = pipeline::run_scan(*config);
    if (config->fail_if_flagged && !summary["flagged"].empty()) set_exit_code(1);
  });
}

}  // namespace nad::cli
