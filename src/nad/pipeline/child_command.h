// A run that `nad table` starts as a child process, held as typed values, and the one function
// that spells it as a command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nad::pipeline {

struct ChildCommand {
  std::string subcommand;  // train, eval, or a defense's command
  std::string model;       // eval: the model measured; a defense: the model it cleans

  std::string dataset, data_dir;
  int image_size = 0;           // 0: the dataset's own
  std::string cifar100_labels;  // given for cifar100 only
  uint64_t seed = 0;
  int threads = 0;
  std::string device;
  bool quiet = false;
  std::vector<std::string> dataset_options;  // the experiment file's, for every run of the dataset

  // What ASR is measured with: nad's attack (with its options), or images someone else
  // triggered. A trigger made while training (trojan) is passed as a file.
  std::string attack;
  std::vector<std::string> attack_options;
  std::string trigger_file;
  std::string triggered_test;
  int64_t target = 0;

  std::string clean_indices;             // a defense's clean subset
  std::vector<std::string> run_options;  // the experiment file's training or defense options
  std::optional<double> lr;              // a rate chosen by another cell of the row
  std::string out;
};

// The argv (subcommand first, no program name) with the CLI's option names (util/flags.h).
// The order is part of the format: a table compares a finished cell's recorded argv with the one
// it would run now, so a reordering would orphan every table folder already on disk.
std::vector<std::string> to_argv(const ChildCommand& command);

}  // namespace nad::pipeline
