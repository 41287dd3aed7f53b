#pragma once
#include <CLI/CLI.hpp>

#include "nad/pipeline/config.h"

namespace nad::cli {

// Options every data-using subcommand shares: dataset, seed, threads, device, output.
void add_common_options(CLI::App& app, pipeline::CommonConfig& config, bool needs_out = true);
// --clean-dir and its test fraction; --dataset becomes optional.
void add_clean_dir_options(CLI::App& app, pipeline::CommonConfig& config);
// --resume DIR (and --out no longer required): for the commands that save resumable state.
void add_resume_option(CLI::App& app, pipeline::CommonConfig& config);
// `nad CMD --resume DIR` with nothing else but --threads / --quiet: the command line saved in
// DIR/state/args.json with those appended; otherwise `args` unchanged.
std::vector<std::string> expand_resume(const std::vector<std::string>& args);
// The subcommands that accept --resume.
bool is_resumable_command(const std::string& name);

// Attack options (how to poison, or only how to measure ASR).
void add_attack_options(CLI::App& app, attacks::AttackOptions& attack, std::string& label_mode);
// --triggered-test DIR: ASR from images someone else triggered (eval and the defenses).
void add_triggered_test_option(CLI::App& app, pipeline::CommonConfig& config);
// --arch, --num-classes, --allow-partial: how to read a checkpoint that does not say them.
void add_model_file_options(CLI::App& app, pipeline::ModelFileOptions& options);
// What every defense that uses the clean subset takes: the common, clean-dir, resume, attack and
// triggered-test options, --model with its file options, --clean-ratio and --clean-indices.
void add_clean_subset_defense_options(CLI::App& app, pipeline::DefenseConfig& config,
                                      std::string& label_mode);
// --verify and its --scan-* options.
void add_verify_options(CLI::App& app, pipeline::DefenseConfig& config);
// Options of the finetuning defenses (finetune, erase, prune, mcr, fst): the above, the schedule,
// --lr auto's search, augmentation and --verify.
void add_defense_options(CLI::App& app, pipeline::DefenseConfig& config, std::string& label_mode);

// Neural Cleanse's options, each named `prefix` + its name ("--" for nad scan, "--scan-" beside
// a defense's own options).
void add_scan_options(CLI::App& app, pipeline::ScanOptions& options, const std::string& prefix);

// --power and --attention: how attention maps are computed (erase, attention).
void add_attention_map_options(CLI::App& app, double& power, std::string& attention);

// Training-time augmentation.
void add_augment_options(CLI::App& app, pipeline::AugmentConfig& config);
// --epochs, --batch-size, --lr, --momentum, --weight-decay, --schedule, --milestones and the
// augmentation: `nad train`'s loop, also inspect-data's --retrain.
void add_train_loop_options(CLI::App& app, pipeline::TrainConfig& config);

// How train and poison make a missing trojan trigger or CL clean model.
void add_attack_prep_options(CLI::App& app, pipeline::AttackPrepConfig& prep);

// Converts the parsed label mode string into the config (after parsing).
void finish_attack_options(attacks::AttackOptions& attack, const std::string& label_mode);
// After parsing a defense's options: what one option implies for others it did not set.
void finish_defense_options(const CLI::App& app, pipeline::DefenseConfig& config);

void setup_train(CLI::App& app);
void setup_eval(CLI::App& app);
void setup_predict(CLI::App& app);
void setup_demo(CLI::App& app);
void setup_export(CLI::App& app);
void setup_poison(CLI::App& app);
void setup_trojan_trigger(CLI::App& app);
void setup_attention(CLI::App& app);
void setup_table(CLI::App& app);
void setup_launch(CLI::App& app);
void setup_scan(CLI::App& app);
void setup_strip(CLI::App& app);
void setup_inspect_data(CLI::App& app);

// The exit code of a command that finished without error: 0 unless it set another (strip: 1
// when it flagged an image; scan --fail-if-flagged: 1 when a class is flagged).
void set_exit_code(int code);
int exit_code();

}  // namespace nad::cli
