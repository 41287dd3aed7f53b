#include "nad/pipeline/context.h"

#include <cstdio>

#include "nad/dist/process_group.h"
#include "nad/io/report.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/threads.h"

namespace nad::pipeline {

nlohmann::json CommonConfig::to_json() const {
  return {{"dataset", dataset.name},
          {"data_dir", dataset.data_dir},
          {"image_size", dataset.image_size},
          {"attack", attack.to_json()},
          {"seed", seed},
          {"threads", threads},
          {"device", device},
          {"out", out},
          {"eval_batch_size", eval_batch_size},
          {"precision", precision},
          {"channels_last", channels_last},
          {"dist_timeout", dist_timeout},
          {"sync_bn", sync_bn},
          {"world_size", dist::world_size()}};
}

double RunContext::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void RunContext::log(const std::string& line) const {
  if (quiet || !dist::is_main()) return;
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

torch::Device parse_device(const std::string& text) {
  if (text == "cpu") return torch::kCPU;
  if (text == "cuda" || text.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      throw UserError("--device " + text + ": this build of nad has no usable CUDA device");
    }
    return torch::Device(text);
  }
  throw UserError("--device must be cpu or cuda[:N], not '" + text + "'");
}

void configure_compute(const CommonConfig& config, const RunContext& context) {
  ComputeOptions compute;
  compute.precision = parse_precision(config.precision);
  compute.channels_last = config.channels_last;
  set_compute_options(compute);
  if (compute.precision == Precision::kBf16 && context.device.is_cpu() && !cpu_has_native_bf16()) {
    print_warnings(
        {"--precision bf16: this CPU has no native bf16 arithmetic (AVX512-BF16 or "
         "AMX); it is emulated and slower than fp32"});
  }
}

RunContext open_run(const CommonConfig& config, bool defer_trojan) {
  RunContext context;
  context.quiet = config.quiet;
  if (config.out.empty()) throw UserError("--out is required");
  context.out = config.out;
  ensure_directory(context.out);
  set_threads(config.threads);
  dist::DistOptions dist_options;
  dist_options.timeout =
      std::chrono::milliseconds(static_cast<int64_t>(config.dist_timeout * 1000));
  dist_options.sync_batch_norm = config.sync_bn;
  const torch::Device requested = parse_device(config.device);
  dist::init(dist_options, requested);
  context.device = dist::local_device(requested);
  configure_compute(config, context);

  context.log("loading " + config.dataset.name + " ...");
  context.data = data::load_dataset(config.dataset);
  const auto& test = context.data.test;
  context.log("  train " + std::to_string(context.data.train.size()) + ", test " +
              std::to_string(test.size()) + " images of " + std::to_string(test.height()) + "x" +
              std::to_string(test.width()) + "x" + std::to_string(test.channels()) + ", " +
              std::to_string(context.data.num_classes()) + " classes");
  std::unique_ptr<attacks::Attack> attack;
  if (!(defer_trojan && config.attack.name == "trojan" && config.attack.trigger_file.empty())) {
    attack = attacks::create_attack(config.attack, test.height(), test.width(), test.channels(),
                                    context.data.num_classes());
  }
  set_attack(context, std::move(attack), config.eval_batch_size);
  return context;
}

void set_attack(RunContext& context, std::unique_ptr<attacks::Attack> attack,
                int64_t eval_batch_size) {
  context.attack = std::move(attack);
  if (context.attack) context.attack->prepare(context.data.train);
  context.evaluator = std::make_unique<train::Evaluator>(context.data.test, context.attack.get(),
                                                         context.device, eval_batch_size);
}

nlohmann::json ModelFileOptions::to_json() const {
  return {{"arch", arch}, {"num_classes", num_classes}, {"allow_partial", allow_partial}};
}

void print_warnings(const std::vector<std::string>& warnings) {
  if (!dist::is_main()) return;
  for (const auto& warning : warnings) std::fprintf(stderr, "nad: warning: %s\n", warning.c_str());
  std::fflush(stderr);
}

io::LoadedModel load_model_for(const std::string& file, const RunContext& context,
                               const char* option, const ModelFileOptions& options) {
  if (file.empty()) throw UserError(std::string(option) + " is required");
  const auto& test = context.data.test;
  io::LoadOptions load;
  load.arch = options.arch;
  load.num_classes = options.num_classes;
  load.allow_partial = options.allow_partial;
  load.input_shape = {test.channels(), test.height(), test.width()};
  load.device = context.device;
  io::LoadedModel loaded = io::load_checkpoint(file, load);
  context.log(std::string(option) + " " + file + ": " + loaded.description);
  print_warnings(loaded.warnings);
  const auto& spec = loaded.spec;
  if (spec.in_channels != test.channels() || spec.height != test.height() ||
      spec.width != test.width() || spec.num_classes != context.data.num_classes()) {
    throw UserError(std::string(option) + " '" + file + "' expects " +
                    std::to_string(spec.in_channels) + "x" + std::to_string(spec.height) + "x" +
                    std::to_string(spec.width) + " inputs and " + std::to_string(spec.num_classes) +
                    " classes, but the dataset has " + std::to_string(test.channels()) + "x" +
                    std::to_string(test.height()) + "x" + std::to_string(test.width()) + " and " +
                    std::to_string(context.data.num_classes()));
  }
  return loaded;
}

data::AugmentOptions augment_options(const AugmentConfig& config, const data::DatasetPair& data) {
  if (config.crop_padding < 0 || config.cutout_holes < 0 || config.cutout_length < 0) {
    throw UserError("augmentation sizes must be >= 0");
  }
  data::AugmentOptions options;
  options.crop_padding = config.crop_padding;
  options.horizontal_flip = config.horizontal_flip.value_or(data.natural_hflip);
  options.cutout_holes = config.cutout_holes;
  options.cutout_length = config.cutout_length;
  options.cutout_fill = data::parse_cutout_fill(config.cutout_fill);
  return options;
}

void write_run_files(const RunContext& context, const nlohmann::json& config,
                     const nlohmann::json& summary, const std::vector<train::EpochRecord>& records,
                     const std::string& report) {
  io::write_json(context.out / "config.json", config);
  io::write_metrics_csv(context.out / "metrics.csv", records);
  io::write_json(context.out / "summary.json", summary);
  write_text_atomic(context.out / "report.md", report);
}

std::string percent_or_dash(const std::optional<double>& value) {
  if (!value) return "-";
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%.2f", *value);
  return buffer;
}

}  // namespace nad::pipeline
