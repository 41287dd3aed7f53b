#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_export(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "export", "write a checkpoint's weights as a PyTorch state_dict (torch.load reads it)");
  auto config = std::make_shared<pipeline::ExportConfig>();
  app->add_option(flag::model, config->model, "checkpoint to export (nad's or PyTorch's)")
      ->required();
  app->add_option(flag::out, config->out, "file to write")->required();
  app->add_option(flag::format, config->format,
                  "zip (torch.save's default) | legacy (_use_new_zipfile_serialization=False)")
      ->capture_default_str()
      ->check(CLI::IsMember({"zip", "legacy"}));
  add_model_file_options(*app, config->model_options);
  app->add_option(flag::input_shape, config->input_shape,
                  "C,H,W when the file does not say it (default: C from the weights, 32x32)")
      ->delimiter(',')
      ->expected(3);
  app->callback([config] { pipeline::run_export(*config); });
}

}  // namespace nad::cli
