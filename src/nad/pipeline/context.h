#pragma once
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "nad/attacks/attack.h"
#include "nad/data/augment.h"
#include "nad/data/dataset.h"
#include "nad/defenses/clean_subset.h"
#include "nad/models/checkpoint.h"
#include "nad/pipeline/config.h"
#include "nad/train/evaluate.h"
#include "nad/train/trainer.h"

namespace nad::pipeline {

// What every run sets up first: the output folder, the device, the data, the attack used to
// measure ASR and the evaluator.
struct RunContext {
  std::filesystem::path out;
  torch::Device device = torch::kCPU;
  data::DatasetPair data;
  std::unique_ptr<attacks::Attack> attack;
  std::unique_ptr<train::Evaluator> evaluator;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  // out/state: the training loops' resumable states, removed when the run completes.
  std::shared_ptr<const train::StateStore> state;
  bool resuming = false;                 // --resume: config.json must match, states are continued
  bool from_clean_dir = false;           // --clean-dir: data.train is the defender's folder
  std::string test_source = "test set";  // where the test metrics come from, for reports
  // --triggered-test: the triggered images it gave (the evaluator holds a device copy).
  std::shared_ptr<const data::TriggeredSet> given_triggered;
  // Where ASR and robust accuracy come from (summary.json's "asr_source"): nad's trigger on the
  // test set, or --triggered-test's folder.
  std::string asr_source;
  int64_t eval_batch_size = train::kEvalBatchSize;  // --eval-batch-size, or the device's default
  // --precision auto: what was chosen and why (config.json's "precision_auto"); null otherwise.
  nlohmann::json precision_choice;
  // Each checkpoint the run loaded: option, file, architecture and the input normalisation with
  // where it came from (config.json's and summary.json's "models_loaded").
  mutable nlohmann::json models_loaded = nlohmann::json::array();

  double seconds() const;
  void log(const std::string& line) const;
  bool quiet = false;
};

torch::Device parse_device(const std::string& text);
// Loads the data and builds the attack. `prepares_attack`: the run calls prepare_attack next
// (train, poison), so a trojan attack without --trigger-file is left unbuilt (context.attack
// empty) for it to make, and Refool's --reflection-select is allowed.
// `resumable` runs (train and the defenses) keep their training loops' states in out/state and
// accept --resume; a fresh run refuses a folder that holds an interrupted one.
RunContext open_run(const CommonConfig& config, bool prepares_attack = false,
                    bool resumable = false);
// The part of open_run before the data: the output folder (--out, or --resume's), threads,
// device and precision. For runs that read their images another way (predict --images).
RunContext open_run_folder(const CommonConfig& config, bool resumable = false);

// Option checks that need no data, run before anything is loaded: a mistake costs nothing.
void check_common_options(const CommonConfig& config);
void check_model_file(const std::string& file, const std::string& option);
// Whether `out` holds a finished run: a summary.json not marked "complete": false.
bool finished_run(const std::filesystem::path& out);
// --out, when given beside --resume, must name the same folder.
void check_resume_folder(const std::string& out, const std::string& resume);

// Sets the process-wide precision and memory format from --precision and --channels-last;
// --precision auto measures (or reads the machine's cached measurement) and records the choice
// in context.precision_choice.
void configure_compute(const CommonConfig& config, RunContext& context);

// Replaces the attack and the evaluator that measures ASR with it.
void set_attack(RunContext& context, std::unique_ptr<attacks::Attack> attack);

// Makes what the attack needs before poisoning (see AttackPrepConfig), updating
// `attack_options` (the trojan trigger file) and context.attack; returns a record for
// config.json, or null when nothing was needed. `run_arch`: the architecture trained by the
// run, used for the clean model unless prep.arch is set.
nlohmann::json prepare_attack(RunContext& context, attacks::AttackOptions& attack_options,
                              const AttackPrepConfig& prep, const std::string& run_arch,
                              const CommonConfig& common);

// What --arch, --num-classes, --allow-partial and --input-norm say about a checkpoint to load.
models::LoadOptions load_options(const ModelFileOptions& options);

// Records a loaded checkpoint in context.models_loaded, prints what was read and its warnings.
void record_loaded_model(const RunContext& context, const std::string& option,
                         const std::string& file, const models::LoadedModel& loaded);

// Loads --model (or --teacher), nad's or a PyTorch checkpoint (the dataset gives the input
// shape a PyTorch file does not say), prints what was skipped, and checks that it fits the
// dataset.
models::LoadedModel load_model_for(const std::string& file, const RunContext& context,
                                   const std::string& option, const ModelFileOptions& options = {});

// Prints each warning on stderr ("nad: warning: ...").
void print_warnings(const std::vector<std::string>& warnings);

data::AugmentOptions augment_options(const AugmentConfig& config, const data::DatasetPair& data);

// The command line of this process after the program name (the subcommand first); kept in
// out/state/args.json so that `nad CMD --resume DIR` alone can repeat it.
void set_command_line(std::vector<std::string> args);
const std::vector<std::string>& command_line();

// Thrown by open_run when --resume names a run that finished already.
class RunAlreadyComplete : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes config.json, or with --resume checks that the run's configuration is the one
// recorded (threads, quiet and the folder's spelling may differ): a UserError names the first
// difference.
void write_or_check_config(const RunContext& context, const nlohmann::json& config);

// After a run stopped early (signal, divergence): writes out/summary.json marked incomplete,
// with why and how to resume. Does nothing when no run folder was opened.
void record_stopped_run(const std::string& reason, const std::string& message);

// Standard outputs; summary.json gets "complete": true and out/state is removed.
void write_run_files(const RunContext& context, const nlohmann::json& config,
                     const nlohmann::json& summary, const std::vector<train::EpochRecord>& records,
                     const std::string& report);

// The defender's clean images: all of --clean-dir, the rows of a --clean-indices file, or a
// seeded stratified `ratio` of the training set; `holdout` of them kept apart (see
// defenses::CleanData). check_clean_ratio runs before anything is loaded.
void check_clean_ratio(const CommonConfig& config, double ratio, const std::string& indices_file);
defenses::CleanData draw_clean_data(const RunContext& context, double ratio,
                                    const std::string& indices_file, uint64_t seed, double holdout);
// Where the clean images came from, for summaries.
std::string clean_source(const RunContext& context, const CommonConfig& config,
                         const std::string& indices_file);

std::string percent_or_dash(const std::optional<double>& value);

}  // namespace nad::pipeline
