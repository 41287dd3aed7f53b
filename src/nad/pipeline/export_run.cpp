#include <cstdio>

#include "nad/io/torch_file.h"
#include "nad/models/checkpoint.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json run_export(const ExportConfig& config) {
  if (config.format != "zip" && config.format != "legacy") {
    throw UserError(flag::format + " must be zip or legacy, not '" + config.format + "'");
  }
  if (config.out.empty()) throw UserError(flag::out + " is required");
  models::LoadOptions options = load_options(config.model_options);
  options.input_shape = config.input_shape;
  models::LoadedModel loaded = models::load_checkpoint(config.model, options);
  print_warnings(loaded.warnings);

  models::NamedTensors state;
  size_t bytes = 0;
  for (const auto& [name, tensor] : models::model_state(loaded.model)) {
    state.emplace_back(name, tensor.detach().to(torch::kCPU));
    bytes += tensor.nbytes();
  }
  io::write_torch_state_dict(
      config.out, state, config.format == "zip" ? io::TorchFormat::kZip : io::TorchFormat::kLegacy);
  const auto& spec = loaded.spec;
  std::fprintf(stderr,
               "exported %s (%lld classes, %lldx%lldx%lld inputs): %zu tensors, %.2f MB, %s "
               "format -> %s\n",
               spec.arch.c_str(), static_cast<long long>(spec.num_classes),
               static_cast<long long>(spec.in_channels), static_cast<long long>(spec.height),
               static_cast<long long>(spec.width), state.size(), bytes / 1e6, config.format.c_str(),
               config.out.c_str());
  // A state_dict holds weights only: whoever loads it must normalise inputs as the model expects.
  if (!spec.input_norm.identity()) {
    std::fprintf(stderr,
                 "nad: note: the model expects inputs normalised with %s; a state_dict does not "
                 "record that: apply torchvision.transforms.Normalize(%s) after ToTensor()\n",
                 spec.input_norm.describe().c_str(),
                 spec.input_norm.to_json()["mean"]
                     .dump()
                     .append(", ")
                     .append(spec.input_norm.to_json()["std"].dump())
                     .c_str());
  }
  return {{"arch", spec.arch},
          {"input_norm", spec.input_norm.to_json()},
          {"num_classes", spec.num_classes},
          {"input_shape", {spec.in_channels, spec.height, spec.width}},
          {"tensors", state.size()},
          {"format", config.format},
          {"out", config.out}};
}

}  // namespace nad::pipeline
