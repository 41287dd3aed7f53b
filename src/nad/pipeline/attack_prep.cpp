#include "nad/attacks/clean_label.h"
#include "nad/attacks/trojan.h"
#include "nad/dist/process_group.h"
#include "nad/io/checkpoint.h"
#include "nad/io/png.h"
#include "nad/pipeline/context.h"
#include "nad/util/error.h"

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

// The clean model Trojan and CL work from: --clean-model, or one trained here on the clean
// training set (saved as clean_model.pt in the output folder).
models::Classifier clean_model_for(RunContext& context, const AttackPrepConfig& prep,
                                   const std::string& arch, const CommonConfig& common,
                                   const std::string& purpose, nlohmann::json& record) {
  if (!prep.clean_model.empty()) {
    io::LoadedModel loaded = load_model_for(prep.clean_model, context, "--clean-model");
    record["clean_model"] = prep.clean_model;
    return loaded.model;
  }
  const data::DatasetPair& data = context.data;
  if (prep.epochs < 1) throw UserError("--prep-epochs must be at least 1 (or give --clean-model)");
  models::ModelSpec spec{arch, data.train.channels(), data.num_classes(), data.train.height(),
                         data.train.width()};
  context.log("training a clean " + arch + " for " + std::to_string(prep.epochs) + " epochs " +
              purpose + " ...");
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
  train::Evaluator clean_only(data.test, nullptr, context.device, common.eval_batch_size);
  std::vector<train::EpochRecord> records = train::train_model(
      model, data.train, options, [&](const models::Classifier& m) { return clean_only(m); });
  const double accuracy = records.empty() ? 0 : records.back().metrics.clean_acc;
  io::save_checkpoint(context.out / "clean_model.pt", model, spec);
  context.log("clean model: ACC " + std::to_string(accuracy).substr(0, 5) +
              "%, saved as clean_model.pt");
  record["clean_model"] = "clean_model.pt";
  record["clean_model_epochs"] = prep.epochs;
  record["clean_model_arch"] = arch;
  record["clean_model_acc"] = accuracy;
  return model;
}

}  // namespace

nlohmann::json prepare_attack(RunContext& context, attacks::AttackOptions& attack_options,
                              const AttackPrepConfig& prep, const std::string& run_arch,
                              const CommonConfig& common) {
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
    set_attack(context,
               attacks::create_attack(attack_options, test.height(), test.width(), test.channels(),
                                      data.num_classes()),
               common.eval_batch_size);
  } else {
    clean_label->set_clean_model(model, context.device);
  }
  return record;
}

}  // namespace nad::pipeline
