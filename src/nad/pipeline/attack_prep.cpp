#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "nad/attacks/clean_label.h"
#include "nad/attacks/refool.h"
#include "nad/attacks/trojan.h"
#include "nad/dist/process_group.h"
#include "nad/io/png.h"
#include "nad/models/checkpoint.h"
#include "nad/pipeline/context.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::pipeline {

nlohmann::json AttackPrepConfig::to_json() const {
  return {{"clean_model", clean_model},
          {"arch", arch},
          {"epochs", epochs},
          {"trigger_size", trigger_size},
          {"trigger_layer", trigger_layer},
          {"trigger_neuron", trigger_neuron}};
}

namespace {

// A model trained here for `prep.epochs` on `train` (the clean training set for Trojan and CL,
// the candidates' poisoned one for Refool's selection), saved in the output folder as
// `name`.pt and recorded under `name`; its training is resumable (state key "prep").
models::Classifier train_prep_model(RunContext& context, const AttackPrepConfig& prep,
                                    const std::string& arch, const CommonConfig& common,
                                    const data::Dataset& train, const std::string& purpose,
                                    const std::string& name, nlohmann::json& record) {
  const data::DatasetPair& data = context.data;
  if (prep.epochs < 1)
    throw UserError(flag::prep_epochs + " must be at least 1 (or give " + flag::clean_model + ")");
  models::ModelSpec spec{arch, data.train.channels(), data.num_classes(), data.train.height(),
                         data.train.width()};
  const std::string file_name = name + ".pt";
  context.log("training a " + std::string(name == "clean_model" ? "clean " : "") + arch + " for " +
              std::to_string(prep.epochs) + " epochs " + purpose + " ...");
  torch::manual_seed(common.seed + 1);
  models::Classifier model = models::create_model(spec);
  train::TrainOptions options;
  options.epochs = prep.epochs;
  options.batch_size = 128;
  options.lr = 0.05;
  options.schedule = train::Schedule::kCosine;
  options.augment = augment_options(AugmentConfig{}, data);
  options.seed = common.seed + 1;
  options.device = context.device;
  options.quiet = common.quiet;
  options.state = context.state;
  options.state_key = "prep";
  options.label = "prep";
  train::Evaluator clean_only(data.test, nullptr, context.device, context.eval_batch_size);
  std::vector<train::EpochRecord> records = train::train_model(
      model, train, options, [&](const models::Classifier& m) { return clean_only(m); });
  const double accuracy = records.empty() ? 0 : records.back().metrics.clean_acc;
  models::save_checkpoint(context.out / file_name, model, spec);
  std::string label = name;  // "clean model", "selection model"
  std::replace(label.begin(), label.end(), '_', ' ');
  context.log(label + ": ACC " + std::to_string(accuracy).substr(0, 5) + "%, saved as " +
              file_name);
  record[name] = file_name;
  record[name + "_epochs"] = prep.epochs;
  record[name + "_arch"] = arch;
  record[name + "_acc"] = accuracy;
  return model;
}

// The clean model Trojan and CL work from: --clean-model, or one trained here on the clean
// training set (saved as clean_model.pt in the output folder).
models::Classifier clean_model_for(RunContext& context, const AttackPrepConfig& prep,
                                   const std::string& arch, const CommonConfig& common,
                                   const std::string& purpose, nlohmann::json& record) {
  if (!prep.clean_model.empty()) {
    models::LoadedModel loaded = load_model_for(prep.clean_model, context, flag::clean_model);
    record["clean_model"] = prep.clean_model;
    return loaded.model;
  }
  return train_prep_model(context, prep, arch, common, context.data.train, purpose, "clean_model",
                          record);
}

// Refool's adversarial selection: a model trained on data poisoned with all candidate
// reflections scores each of them on 128 non-target training images; the best K stay in the
// attack and are saved as OUT/reflections/NNN.png (best first), which later commands take with
// --reflections.
nlohmann::json select_reflections(RunContext& context, attacks::Refool& refool,
                                  attacks::AttackOptions& attack_options,
                                  const AttackPrepConfig& prep, const std::string& arch,
                                  const CommonConfig& common) {
  const data::Dataset& train = context.data.train;
  const int64_t candidates = refool.reflections().size(0);
  const int64_t keep = attack_options.reflection_select;
  nlohmann::json record = nlohmann::json::object();
  const attacks::PoisonedSet poisoned = refool.poison(train, common.seed);
  models::Classifier model = train_prep_model(
      context, prep, arch, common, poisoned.data,
      "on data poisoned with " + std::to_string(candidates) + " candidate reflections",
      "selection_model", record);

  torch::Tensor others = torch::nonzero(train.labels.cpu() != attack_options.target).flatten();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(common.seed + 2);
  torch::Tensor rows = others.index_select(
      0, torch::randperm(others.size(0), generator, torch::kLong).slice(0, 0, 128));
  const torch::Tensor probe = train.images.cpu().index_select(0, rows);
  context.log("scoring " + std::to_string(candidates) + " reflections on " +
              std::to_string(probe.size(0)) + " non-target images ...");
  const torch::Tensor scores =
      attacks::score_reflections(model, refool, probe, context.device, context.eval_batch_size);
  const torch::Tensor order = std::get<1>(scores.sort(/*stable=*/true, 0, /*descending=*/true));
  const torch::Tensor kept = order.slice(0, 0, keep);
  refool.keep_reflections(kept);

  const auto folder = context.out / "reflections";
  std::filesystem::create_directories(folder);
  for (int64_t i = 0; i < keep; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%03lld.png", static_cast<long long>(i));
    io::write_png(folder / name, refool.reflections()[i]);
  }
  dist::barrier();  // in a distributed run every rank then reads what rank 0 wrote
  attack_options.reflections_dir = folder.string();
  const torch::Tensor kept_scores = scores.index_select(0, kept);
  const double kept_mean = kept_scores.mean().item<double>();
  const double all_mean = scores.mean().item<double>();
  char line[200];
  std::snprintf(line, sizeof line,
                "kept %lld of %lld reflections: mean target probability %.3f (best %.3f), "
                "against %.3f over all; saved in reflections/",
                static_cast<long long>(keep), static_cast<long long>(candidates), kept_mean,
                kept_scores.max().item<double>(), all_mean);
  context.log(line);
  record["reflection_candidates"] = candidates;
  record["reflections_kept"] = keep;
  record["reflections"] = "reflections";
  record["score_kept_mean"] = kept_mean;
  record["score_all_mean"] = all_mean;
  // The evaluator measures ASR with the kept reflections from here on.
  set_attack(context, std::move(context.attack));
  return record;
}

}  // namespace

nlohmann::json prepare_attack(RunContext& context, attacks::AttackOptions& attack_options,
                              const AttackPrepConfig& prep, const std::string& run_arch,
                              const CommonConfig& common) {
  if (auto* refool = dynamic_cast<attacks::Refool*>(context.attack.get());
      refool && refool->needs_selection()) {
    return select_reflections(context, *refool, attack_options, prep,
                              prep.arch.empty() ? run_arch : prep.arch, common);
  }
  const bool make_trigger = attack_options.name == "trojan" && !context.attack;
  auto* clean_label = dynamic_cast<attacks::CleanLabel*>(context.attack.get());
  const bool needs_model = make_trigger || (clean_label && !clean_label->has_clean_model());
  if (!needs_model) return nullptr;

  const std::string arch = prep.arch.empty() ? run_arch : prep.arch;
  nlohmann::json record = nlohmann::json::object();
  models::Classifier model = clean_model_for(
      context, prep, arch, common,
      make_trigger ? "to make the trojan trigger" : "for CL's adversarial images", record);
  const data::DatasetPair& data = context.data;
  if (make_trigger) {
    attacks::TrojanTriggerOptions options;
    options.group = prep.trigger_layer;
    options.size = prep.trigger_size;
    options.neuron = prep.trigger_neuron;
    options.seed = common.seed;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(common.seed);
    torch::Tensor rows =
        torch::randperm(data.train.size(), generator, torch::kLong).slice(0, 0, options.batch_size);
    attacks::TrojanTrigger trigger = attacks::generate_trojan_trigger(
        model, data.train.images.index_select(0, rows.to(data.train.images.device())), options,
        context.device);
    const auto file = context.out / "trigger.png";
    io::write_png(file, trigger.patch);
    dist::barrier();  // in a distributed run every rank then reads the file rank 0 wrote
    attack_options.trigger_file = file.string();
    context.log("trojan trigger: " + std::to_string(trigger.patch.size(0)) + "x" +
                std::to_string(trigger.patch.size(1)) + " patch for neuron " +
                std::to_string(trigger.neuron) + " of group " + std::to_string(trigger.group) +
                " (mean activation " + std::to_string(trigger.activation_clean) + " -> " +
                std::to_string(trigger.activation_triggered) + "), saved as trigger.png");
    record["trigger_file"] = "trigger.png";
    record["trigger_group"] = trigger.group;
    record["trigger_neuron"] = trigger.neuron;
    record["activation_clean"] = trigger.activation_clean;
    record["activation_triggered"] = trigger.activation_triggered;
    const auto& test = data.test;
    set_attack(context, attacks::create_attack(attack_options, test.height(), test.width(),
                                               test.channels(), data.num_classes()));
  } else {
    clean_label->set_clean_model(model, context.device);
  }
  return record;
}

}  // namespace nad::pipeline
