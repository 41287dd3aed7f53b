#include <memory>

#include "common.h"
#include "nad/pipeline/runs.h"
#include "nad/util/flags.h"

namespace nad::cli {

void setup_trojan_trigger(CLI::App& parent) {
  auto* app = parent.add_subcommand(
      "trojan-trigger",
      "optimise a TrojanNN trigger patch on a model: the square patch, stamped bottom-right, "
      "that most excites one neuron (for --attack trojan --trigger-file)");
  auto config = std::make_shared<pipeline::TrojanTriggerConfig>();
  app->add_option(flag::model, config->model, "checkpoint the patch is optimised on")->required();
  add_model_file_options(*app, config->model_options);
  app->add_option(
         flag::dataset, config->dataset.name,
         "mnist | fashion-mnist | cifar10 | cifar100 | gtsrb | tiny-imagenet | folder (images "
         "to optimise over)")
      ->required()
      ->check(CLI::IsMember(data::dataset_names()));
  app->add_option(flag::data_dir, config->dataset.data_dir, "dataset folder");
  app->add_option(flag::image_size, config->dataset.image_size, "folder datasets: resize to N x N")
      ->check(CLI::NonNegativeNumber);
  app->add_option(flag::cifar100_labels, config->dataset.cifar100_labels,
                  "cifar100: fine (100 classes) or coarse (the 20 superclasses)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fine", "coarse"}));
  app->add_option(flag::out, config->out, "PNG file to write")->required();
  app->add_option(flag::layer, config->layer,
                  "group (0-based, as in the model's attention groups) holding the neuron; -1: "
                  "the last")
      ->capture_default_str();
  app->add_option(flag::size, config->size, "patch side in pixels")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app->add_option(flag::neuron, config->neuron,
                  "channel to excite (-1: the one with the largest summed outgoing weight)")
      ->capture_default_str();
  app->add_option(flag::steps, config->steps, "Adam steps")->capture_default_str();
  app->add_option(flag::lr, config->lr, "Adam learning rate")->capture_default_str();
  app->add_option(flag::images, config->images, "training images the patch is optimised over")
      ->capture_default_str();
  app->add_option(flag::seed, config->seed, "random seed")->capture_default_str();
  app->add_option(flag::threads, config->threads, "CPU threads (0: all cores)")
      ->capture_default_str();
  app->add_option(flag::device, config->device, "cpu or cuda[:N]")->capture_default_str();
  app->add_flag(flag::quiet, config->quiet, "no progress output");
  app->callback([config] { pipeline::run_trojan_trigger(*config); });
}

}  // namespace nad::cli
