#include "nad/pipeline/context.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "nad/attacks/triggered_folder.h"
#include "nad/dist/process_group.h"
#include "nad/io/json.h"
#include "nad/train/report.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/format.h"
#include "nad/util/precision_choice.h"
#include "nad/util/threads.h"

namespace nad::pipeline {

namespace fs = std::filesystem;

nlohmann::json CommonConfig::to_json() const {
  nlohmann::json json = {
      {"dataset", dataset.name},
      {"data_dir", dataset.data_dir},
      {"clean_dir", clean_dir},
      {"clean_dir_test_fraction",
       clean_dir.empty() ? nlohmann::json(nullptr) : nlohmann::json(clean_dir_test_fraction)},
      {"image_size", dataset.image_size},
      {"attack", attack.to_json()},
      {"seed", seed},
      {"threads", threads},
      {"device", device},
      {"out", out},
      {"eval_batch_size", eval_batch_size},
      {"precision", precision},
      {"channels_last", channels_last},
      {"cuda_graphs", cuda_graphs},
      {"dist_timeout", dist_timeout},
      {"sync_bn", sync_bn},
      {"world_size", dist::world_size()}};
  // Only where it applies, so that runs of other datasets interrupted before the option
  // existed still resume (--resume compares config.json key by key).
  if (dataset.name == "cifar100") json["cifar100_labels"] = dataset.cifar100_labels;
  if (!triggered_test.empty()) json["triggered_test"] = triggered_test;
  return json;
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
      throw UserError(flag::device + " " + text + ": this build of nad has no usable CUDA device");
    }
    return torch::Device(text);
  }
  throw UserError(flag::device + " must be cpu or cuda[:N], not '" + text + "'");
}

void configure_compute(const CommonConfig& config, RunContext& context) {
  ComputeOptions compute;
  compute.channels_last = config.channels_last;
  compute.cuda_graphs = config.cuda_graphs;
  if (config.precision == "auto") {
    set_compute_options(compute);  // the measurement runs in the run's memory format
    const PrecisionChoice choice = choose_precision(context.device);
    compute.precision = choice.precision;
    context.precision_choice = choice.to_json();
    context.log("precision: " + precision_name(choice.precision) + " (" + flag::precision +
                " auto: " + choice.reason +
                (choice.from_cache ? ", measured earlier on this machine" : "") + ")");
  } else {
    compute.precision = parse_precision(config.precision);
  }
  set_compute_options(compute);
  if (config.precision != "bf16" || !context.device.is_cpu()) return;
  if (!cpu_has_native_bf16()) {
    print_warnings({flag::precision +
                    " bf16: this CPU has no native bf16 arithmetic (AVX512-BF16 or "
                    "AMX); it is emulated and slower than fp32"});
  } else if (auto timing = cached_timing(precision_cache_file(), machine_key(context.device));
             timing && timing->bf16_ms > timing->fp32_ms) {
    print_warnings({flag::precision + " bf16: on this machine bf16 trained slower than fp32 (" +
                    format_double(timing->bf16_ms, "%.1f") + " ms against " +
                    format_double(timing->fp32_ms, "%.1f") + " ms a step, measured by " +
                    flag::precision + " auto)"});
  }
}

namespace {

std::vector<std::string> process_command_line;
fs::path current_run;  // the folder of the run in progress, for record_stopped_run

// The training loops whose state out/state holds, sorted.
std::vector<std::string> saved_loops(const fs::path& out) {
  std::vector<std::string> loops;
  std::error_code ec;
  if (!fs::is_directory(out / "state", ec)) return loops;
  for (const auto& entry : fs::directory_iterator(out / "state", ec)) {
    if (entry.path().extension() == ".state") loops.push_back(entry.path().stem().string());
  }
  std::sort(loops.begin(), loops.end());
  return loops;
}

// The resume command printed for an interrupted run.
std::string resume_command(const fs::path& out) {
  const std::string command = process_command_line.empty() ? "CMD" : process_command_line[0];
  if (command == "demo") return "nad demo (run it again: it continues)";
  return "nad " + command + " " + flag::resume + " " + out.string();
}

}  // namespace

void check_common_options(const CommonConfig& config) {
  const attacks::AttackOptions& attack = config.attack;
  if (attack.poison_rate) attacks::check_poison_rate(*attack.poison_rate);
  if (attack.label_mode == attacks::LabelMode::kAllToOne && attack.target < 0) {
    throw UserError(flag::target + " must be a class number >= 0, not " +
                    std::to_string(attack.target));
  }
  if (config.eval_batch_size < 0) {
    throw UserError(flag::eval_batch_size + " must be positive (or 0: the device's default)");
  }
  if (config.threads < 0) throw UserError(flag::threads + " must be >= 0");
  parse_device(config.device);
  if (config.precision != "auto") parse_precision(config.precision);
}

void check_model_file(const std::string& file, const std::string& option) {
  if (file.empty()) throw UserError(option + " is required");
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw UserError(option + " '" + file + "': no such file");
  }
}

bool finished_run(const fs::path& out) {
  const nlohmann::json summary = io::read_json_or_null(out / "summary.json");
  return summary.is_object() && summary.value("complete", true) == true;
}

void check_resume_folder(const std::string& out, const std::string& resume) {
  if (!out.empty() && fs::weakly_canonical(out) != fs::weakly_canonical(resume)) {
    throw UserError(flag::out + " " + out + " and " + flag::resume + " " + resume +
                    " name different folders");
  }
}

void set_command_line(std::vector<std::string> args) { process_command_line = std::move(args); }
const std::vector<std::string>& command_line() { return process_command_line; }

RunContext open_run_folder(const CommonConfig& config, bool resumable) {
  RunContext context;
  context.quiet = config.quiet;
  if (!config.resume.empty() && !resumable) {
    throw UserError(flag::resume + ": this command saves no state to resume from");
  }
  if (!config.resume.empty()) {
    check_resume_folder(config.out, config.resume);
    context.out = config.resume;
    context.resuming = true;
    if (!fs::is_directory(context.out)) {
      throw UserError(flag::resume + " " + config.resume + ": no such folder");
    }
    if (finished_run(context.out)) {
      throw RunAlreadyComplete(config.resume + " finished already (its summary.json is complete)");
    }
    if (!fs::is_regular_file(context.out / "state" / "args.json")) {
      throw UserError(flag::resume + " " + config.resume +
                      ": no saved state (state/args.json) in it; it was not made by a resumable "
                      "nad command");
    }
  } else {
    if (config.out.empty()) throw UserError(flag::out + " is required");
    context.out = config.out;
    if (resumable && !saved_loops(context.out).empty() && !finished_run(context.out)) {
      throw UserError("'" + config.out + "' holds an interrupted run (state/): continue it with " +
                      resume_command(context.out) + ", or delete the folder or choose another " +
                      flag::out);
    }
  }
  ensure_directory(context.out);
  current_run = context.out;
  if (resumable) context.state = std::make_shared<train::StateStore>(context.out / "state");
  if (resumable && !context.resuming && !process_command_line.empty()) {
    nlohmann::json args = process_command_line;
    io::write_json(context.out / "state" / "args.json", args);
  }
  set_threads(config.threads);
  dist::DistOptions dist_options;
  dist_options.timeout =
      std::chrono::milliseconds(static_cast<int64_t>(config.dist_timeout * 1000));
  dist_options.sync_batch_norm = config.sync_bn;
  const torch::Device requested = parse_device(config.device);
  dist::init(dist_options, requested);
  context.device = dist::local_device(requested);
  context.eval_batch_size = config.eval_batch_size > 0
                                ? config.eval_batch_size
                                : train::default_eval_batch_size(context.device);
  configure_compute(config, context);
  return context;
}

RunContext open_run(const CommonConfig& config, bool prepares_attack, bool resumable) {
  if (config.attack.name == "refool" && config.attack.reflection_select > 0 && !prepares_attack) {
    throw UserError(flag::reflection_select +
                    " picks reflections while training (train, poison); here give the "
                    "chosen ones with " +
                    flag::reflections + " TRAIN_OUT/reflections");
  }
  RunContext context = open_run_folder(config, resumable);
  if (config.clean_dir.empty()) {
    if (config.dataset.name.empty()) throw UserError(flag::dataset + " is required");
    context.log("loading " + config.dataset.name + " ...");
    context.data = data::load_dataset(config.dataset);
  } else {
    context.log("loading " + flag::clean_dir + " " + config.clean_dir + " ...");
    data::CleanDirData own = data::load_clean_dir(config.clean_dir, config.dataset,
                                                  config.clean_dir_test_fraction, config.seed);
    context.data = std::move(own.pair);
    context.from_clean_dir = true;
    if (own.test_from_folder) {
      context.test_source =
          "held-out part of " + flag::clean_dir + " (" + std::to_string(context.data.test.size()) +
          " images, " +
          std::to_string(static_cast<int>(std::lround(100 * config.clean_dir_test_fraction))) +
          "%, never trained on)";
    }
    context.log("  " + std::to_string(context.data.train.size()) +
                " of the defender's images to use (classes by " + own.mapping +
                "); test metrics on " +
                (own.test_from_folder ? context.test_source : config.dataset.name + "'s test set"));
  }
  const auto& test = context.data.test;
  context.log("  train " + std::to_string(context.data.train.size()) + ", test " +
              std::to_string(test.size()) + " images of " + std::to_string(test.height()) + "x" +
              std::to_string(test.width()) + "x" + std::to_string(test.channels()) + ", " +
              std::to_string(context.data.num_classes()) + " classes");
  std::unique_ptr<attacks::Attack> attack;
  if (!(prepares_attack && config.attack.name == "trojan" && config.attack.trigger_file.empty())) {
    attack = attacks::create_attack(config.attack, test.height(), test.width(), test.channels(),
                                    context.data.num_classes());
  }
  if (!config.triggered_test.empty()) {
    if (attack) {
      throw UserError(flag::triggered_test + " measures ASR on its own images and " + flag::attack +
                      " " + config.attack.name + " on nad's trigger: give one of them");
    }
    attacks::TriggeredFolder folder = attacks::read_triggered_folder(
        config.triggered_test, config.attack, context.data.num_classes(), test.height(),
        test.width(), test.channels());
    const bool all_to_one = config.attack.label_mode == attacks::LabelMode::kAllToOne;
    context.asr_source = flag::triggered_test + " " + config.triggered_test + " (" +
                         std::to_string(folder.set.data.size()) + " images, classes by " +
                         folder.mapping + ", " +
                         (all_to_one ? "target " + std::to_string(config.attack.target)
                                     : std::string("all-to-all")) +
                         ")";
    context.log("  ASR from " + context.asr_source +
                (folder.dropped_target_rows > 0
                     ? "; " + std::to_string(folder.dropped_target_rows) +
                           " images of the target class left out"
                     : ""));
    context.given_triggered = std::make_shared<data::TriggeredSet>(std::move(folder.set));
  }
  set_attack(context, std::move(attack));
  return context;
}

void set_attack(RunContext& context, std::unique_ptr<attacks::Attack> attack) {
  context.attack = std::move(attack);
  std::optional<data::TriggeredSet> from_attack;
  if (context.attack) {
    context.attack->prepare(context.data.train);
    from_attack = context.attack->triggered_test_set(context.data.test);
    context.asr_source =
        "nad's " + context.attack->options().name + " trigger on the " + context.test_source;
  }
  const data::TriggeredSet* triggered = from_attack ? &*from_attack : context.given_triggered.get();
  context.evaluator = std::make_unique<train::Evaluator>(context.data.test, triggered,
                                                         context.device, context.eval_batch_size);
}

nlohmann::json ModelFileOptions::to_json() const {
  return {{"arch", arch},
          {"num_classes", num_classes},
          {"allow_partial", allow_partial},
          {"input_norm", input_norm}};
}

void print_warnings(const std::vector<std::string>& warnings) {
  if (!dist::is_main()) return;
  for (const auto& warning : warnings) std::fprintf(stderr, "nad: warning: %s\n", warning.c_str());
  std::fflush(stderr);
}

models::LoadOptions load_options(const ModelFileOptions& options) {
  models::LoadOptions load;
  load.arch = options.arch;
  load.num_classes = options.num_classes;
  load.allow_partial = options.allow_partial;
  if (!options.input_norm.empty()) load.input_norm = models::parse_input_norm(options.input_norm);
  return load;
}

void record_loaded_model(const RunContext& context, const std::string& option,
                         const std::string& file, const models::LoadedModel& loaded) {
  context.models_loaded.push_back({{"option", option},
                                   {"file", file},
                                   {"arch", loaded.spec.arch},
                                   {"input_norm", loaded.spec.input_norm.to_json()},
                                   {"input_norm_source", loaded.input_norm_source}});
  context.log(option + " " + file + ": " + loaded.description);
  print_warnings(loaded.warnings);
}

models::LoadedModel load_model_for(const std::string& file, const RunContext& context,
                                   const std::string& option, const ModelFileOptions& options) {
  if (file.empty()) throw UserError(option + " is required");
  const auto& test = context.data.test;
  models::LoadOptions load = load_options(options);
  load.input_shape = {test.channels(), test.height(), test.width()};
  load.device = context.device;
  models::LoadedModel loaded = models::load_checkpoint(file, load);
  record_loaded_model(context, option, file, loaded);
  const auto& spec = loaded.spec;
  if (spec.in_channels != test.channels() || spec.height != test.height() ||
      spec.width != test.width() || spec.num_classes != context.data.num_classes()) {
    throw UserError(option + " '" + file + "' expects " + std::to_string(spec.in_channels) + "x" +
                    std::to_string(spec.height) + "x" + std::to_string(spec.width) +
                    " inputs and " + std::to_string(spec.num_classes) +
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

void write_or_check_config(const RunContext& context, const nlohmann::json& given) {
  const fs::path file = context.out / "config.json";
  nlohmann::json config = given;
  if (!context.precision_choice.is_null()) config["precision_auto"] = context.precision_choice;
  if (!context.models_loaded.empty()) config["models_loaded"] = context.models_loaded;
  // A fresh run, or one whose first process stopped before writing it.
  if (!context.resuming || !fs::exists(file)) {
    io::write_json(file, config);
    return;
  }
  const nlohmann::json recorded = io::read_json_or_null(file);
  if (!recorded.is_object()) {
    throw UserError(flag::resume + " " + context.out.string() +
                    ": config.json is missing or damaged");
  }
  // What may change between the two processes without changing what is computed.
  static const std::set<std::string> free = {"/common/threads", "/common/quiet", "/common/out",
                                             "/common/world_size"};
  for (const auto& op : nlohmann::json::diff(recorded, config)) {
    const std::string path = op.value("path", std::string());
    // A resumed run reads the cached measurement where the first one made it.
    if (free.count(path) || path.rfind("/precision_auto", 0) == 0) continue;
    const nlohmann::json::json_pointer pointer(path);
    const std::string was = recorded.contains(pointer) ? recorded[pointer].dump() : "(absent)";
    const std::string now = config.contains(pointer) ? config[pointer].dump() : "(absent)";
    throw UserError(flag::resume + " " + context.out.string() +
                    ": the options differ from the interrupted run's (config.json): " + path +
                    " was " + was + ", now " + now);
  }
}

void record_stopped_run(const std::string& reason, const std::string& message) {
  if (current_run.empty()) return;
  nlohmann::json summary = {{"complete", false},
                            {"stopped_by", reason},
                            {"message", message},
                            {"resume", resume_command(current_run)}};
  const std::vector<std::string> loops = saved_loops(current_run);
  if (!loops.empty()) summary["saved_loops"] = loops;
  io::write_json(current_run / "summary.json", summary);
}

void write_run_files(const RunContext& context, const nlohmann::json& config,
                     const nlohmann::json& summary, const std::vector<train::EpochRecord>& records,
                     const std::string& report) {
  write_or_check_config(context, config);
  train::write_metrics_csv(context.out / "metrics.csv", records);
  write_text_atomic(context.out / "report.md", report);
  nlohmann::json complete = summary;
  if (!context.models_loaded.empty()) complete["models_loaded"] = context.models_loaded;
  if (context.evaluator && context.evaluator->has_attack()) {
    complete["asr_source"] = context.asr_source;
  }
  complete["complete"] = true;
  // summary.json last: its presence marks the run finished.
  io::write_json(context.out / "summary.json", complete);
  if (dist::is_main()) {
    remove_tree(context.out / "state");
  }
  current_run.clear();
}

void check_clean_ratio(const CommonConfig& config, double ratio, const std::string& indices_file) {
  if (!config.clean_dir.empty()) {
    if (!indices_file.empty())
      throw UserError(flag::clean_indices + " and " + flag::clean_dir + " exclude each other");
    return;  // the folder is the clean data, whole
  }
  if (indices_file.empty() && !(ratio > 0 && ratio <= 1)) {
    throw UserError(flag::clean_ratio + " must be in (0, 1], not " + std::to_string(ratio));
  }
}

defenses::CleanData draw_clean_data(const RunContext& context, double ratio,
                                    const std::string& indices_file, uint64_t seed,
                                    double holdout) {
  if (!indices_file.empty()) {
    return defenses::clean_data_from_file(context.data.train, indices_file, seed, holdout);
  }
  return defenses::make_clean_data(context.data.train, context.from_clean_dir ? 1.0 : ratio, seed,
                                   holdout);
}

std::string clean_source(const RunContext& context, const CommonConfig& config,
                         const std::string& indices_file) {
  if (context.from_clean_dir) return flag::clean_dir + " " + config.clean_dir;
  return indices_file.empty() ? "seeded stratified sample" : indices_file;
}

std::string percent_or_dash(const std::optional<double>& value) {
  if (!value) return "-";
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%.2f", *value);
  return buffer;
}

}  // namespace nad::pipeline
