#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nad/pipeline/config.h"

// The subcommands' work: each loads what it needs, runs, writes its output folder (model.pt,
// summary.json, metrics.csv, config.json, report.md) and returns the summary.
namespace nad::pipeline {

nlohmann::json run_train(const TrainConfig& config);
nlohmann::json run_eval(const EvalConfig& config);
// predictions.csv (and logits.npy) for --images or a dataset split.
nlohmann::json run_predict(const PredictConfig& config);
nlohmann::json run_finetune(const DefenseConfig& config);
nlohmann::json run_erase(const EraseConfig& config);
// Fine-pruning and MCR, the paper's other baselines.
nlohmann::json run_prune(const PruneConfig& config);
nlohmann::json run_mcr(const McrConfig& config);
// Neural Cleanse: reverses each class's smallest trigger on clean data and flags outlier
// classes as backdoor targets (scan.json, triggers.png, norms.png, report.md).
nlohmann::json run_scan(const ScanConfig& config);
// Draws the attention maps of --model and every --compare model on the same test images
// (attention.png) and measures each.
nlohmann::json run_attention(const AttentionConfig& config);
// STRIP: calibrates a threshold (strip.json, overlays.png, entropy.png, entropies.csv) or, with
// --threshold-file and --images, flags images (flags.csv); the summary's "flagged" counts them.
nlohmann::json run_strip(const StripConfig& config);
// Runs one nad subcommand (arguments without the program name) and returns its exit code.
using CommandRunner = std::function<int(const std::vector<std::string>& args)>;
// Runs every cell of an experiment file that has not run yet (a cell is one nad command writing
// one folder: a backdoored model, or one defense of it), then writes table.md, table.csv,
// results.json and curves/*.png from all finished cells.
nlohmann::json run_table(const TableConfig& config, const CommandRunner& run_command);
// Fashion-MNIST, mnist-cnn, BadNets grid to class 0 at 10%: train, erase from 5% clean data,
// print the before/after table.
nlohmann::json run_demo(const DemoConfig& config);
// Writes the poisoned training set as train/<class>/<index>.png (and the clean test set as
// test/<class>/<index>.png, so the folder dataset reads it back), manifest.json and
// samples.png.
nlohmann::json run_poison(const PoisonConfig& config);
// Optimises a TrojanNN patch on a model (see attacks::generate_trojan_trigger) and writes it as
// a PNG file.
nlohmann::json run_trojan_trigger(const TrojanTriggerConfig& config);
// Writes the model of any checkpoint nad reads as a bare state_dict that torch.load reads.
nlohmann::json run_export(const ExportConfig& config);

}  // namespace nad::pipeline
