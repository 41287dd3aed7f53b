#pragma once
#include <nlohmann/json.hpp>

#include "nad/pipeline/config.h"

// The subcommands' work: each loads what it needs, runs, writes its output folder (model.pt,
// summary.json, metrics.csv, config.json, report.md) and returns the summary.
namespace nad::pipeline {

nlohmann::json run_train(const TrainConfig& config);
nlohmann::json run_eval(const EvalConfig& config);
nlohmann::json run_finetune(const DefenseConfig& config);
nlohmann::json run_erase(const EraseConfig& config);
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
