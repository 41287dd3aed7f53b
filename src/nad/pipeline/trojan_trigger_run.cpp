#include "nad/attacks/trojan.h"
#include "nad/io/png.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/threads.h"

namespace nad::pipeline {

nlohmann::json run_trojan_trigger(const TrojanTriggerConfig& config) {
  if (config.out.empty()) throw UserError(flag::out + " is required");
  if (config.images < 1) throw UserError(flag::images + " must be at least 1");
  if (config.steps < 0) throw UserError(flag::steps + " must be >= 0");
  RunContext context;
  context.quiet = config.quiet;
  context.device = parse_device(config.device);
  set_threads(config.threads);
  context.log("loading " + config.dataset.name + " ...");
  context.data = data::load_dataset(config.dataset);
  models::LoadedModel loaded =
      load_model_for(config.model, context, flag::model, config.model_options);

  attacks::TrojanTriggerOptions options;
  options.group = config.layer;
  options.size = config.size;
  options.neuron = config.neuron;
  options.steps = config.steps;
  options.lr = config.lr;
  options.batch_size = config.images;
  options.seed = config.seed;
  const data::Dataset& train = context.data.train;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(config.seed);
  torch::Tensor rows =
      torch::randperm(train.size(), generator, torch::kLong).slice(0, 0, config.images);
  const attacks::TrojanTrigger trigger = attacks::generate_trojan_trigger(
      loaded.model, train.images.index_select(0, rows.to(train.images.device())), options,
      context.device);

  const std::filesystem::path out = config.out;
  if (out.has_parent_path()) ensure_directory(out.parent_path());
  io::write_png(out, trigger.patch);
  nlohmann::json summary = {
      {"trigger_file", config.out},
      {"size", trigger.patch.size(0)},
      {"group", trigger.group},
      {"group_name", loaded.model->group_names().at(static_cast<size_t>(trigger.group))},
      {"neuron", trigger.neuron},
      {"activation_clean", trigger.activation_clean},
      {"activation_triggered", trigger.activation_triggered},
      {"seconds", context.seconds()}};
  context.log("neuron " + std::to_string(trigger.neuron) + " of group " +
              std::to_string(trigger.group) + " (" + summary["group_name"].get<std::string>() +
              "): mean activation " + std::to_string(trigger.activation_clean) +
              " on clean images, " + std::to_string(trigger.activation_triggered) +
              " with the patch");
  context.log("wrote " + config.out);
  return summary;
}

}  // namespace nad::pipeline
