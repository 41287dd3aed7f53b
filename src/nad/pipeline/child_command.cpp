#include "nad/pipeline/child_command.h"

#include "nad/util/flags.h"
#include "nad/util/format.h"

namespace nad::pipeline {

std::vector<std::string> to_argv(const ChildCommand& command) {
  std::vector<std::string> argv{command.subcommand};
  auto add = [&argv](const std::string& flag, const std::string& value) {
    argv.push_back(flag);
    argv.push_back(value);
  };
  auto append = [&argv](const std::vector<std::string>& options) {
    argv.insert(argv.end(), options.begin(), options.end());
  };
  const bool evaluates = command.subcommand == "eval";
  if (evaluates) add(flag::model, command.model);

  add(flag::dataset, command.dataset);
  if (!command.data_dir.empty()) add(flag::data_dir, command.data_dir);
  if (command.image_size > 0) add(flag::image_size, std::to_string(command.image_size));
  if (!command.cifar100_labels.empty()) add(flag::cifar100_labels, command.cifar100_labels);
  add(flag::seed, std::to_string(command.seed));
  add(flag::threads, std::to_string(command.threads));
  add(flag::device, command.device);
  if (command.quiet) argv.push_back(flag::quiet);
  append(command.dataset_options);

  if (!command.triggered_test.empty()) {
    add(flag::triggered_test, command.triggered_test);
    add(flag::target, std::to_string(command.target));
  } else if (!command.attack.empty()) {
    add(flag::attack, command.attack);
    add(flag::target, std::to_string(command.target));
    append(command.attack_options);
    if (!command.trigger_file.empty()) add(flag::trigger_file, command.trigger_file);
  }

  if (!evaluates && !command.model.empty()) add(flag::model, command.model);
  if (!command.clean_indices.empty()) add(flag::clean_indices, command.clean_indices);
  append(command.run_options);
  if (command.lr) add(flag::lr, format_double(*command.lr, "%.6g"));
  add(flag::out, command.out);
  return argv;
}

}  // namespace nad::pipeline
