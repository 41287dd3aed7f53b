#include "nad/pipeline/child_command.h"

#include <gtest/gtest.h>

namespace nad::pipeline {
namespace {

// The argv as one line, so that each expectation reads as the command it is. No argument here
// holds a space, so the line still tells where each argument ends.
std::string command_line(const ChildCommand& command) {
  std::string line;
  for (const std::string& arg : to_argv(command)) {
    EXPECT_EQ(arg.find(' '), std::string::npos) << "argument '" << arg << "'";
    line += (line.empty() ? "" : " ") + arg;
  }
  return line;
}

ChildCommand row() {
  ChildCommand command;
  command.dataset = "cifar10";
  command.data_dir = "data/cifar10";
  command.seed = 3;
  command.threads = 2;
  command.device = "cpu";
  command.dataset_options = {"--eval-batch-size", "256"};
  command.attack = "badnets";
  command.attack_options = {"--poison-rate", "0.05"};
  command.target = 5;
  return command;
}

// The order is the one tables on disk recorded: a finished cell is matched by its argv.
TEST(ChildCommand, TrainingCell) {
  ChildCommand train = row();
  train.subcommand = "train";
  train.run_options = {"--epochs", "20"};
  train.out = "t/cifar10/badnets/backdoored";
  EXPECT_EQ(command_line(train),
            "train --dataset cifar10 --data-dir data/cifar10 --seed 3 --threads 2 --device cpu "
            "--eval-batch-size 256 --attack badnets --target 5 --poison-rate 0.05 --epochs 20 "
            "--out t/cifar10/badnets/backdoored");
}

TEST(ChildCommand, EvalCellNamesTheModelFirst) {
  ChildCommand eval = row();
  eval.subcommand = "eval";
  eval.model = "given.pt";
  eval.quiet = true;
  eval.image_size = 64;
  eval.cifar100_labels = "coarse";
  eval.triggered_test = "their-triggered";
  eval.out = "o";
  EXPECT_EQ(command_line(eval),
            "eval --model given.pt --dataset cifar10 --data-dir data/cifar10 --image-size 64 "
            "--cifar100-labels coarse --seed 3 --threads 2 --device cpu --quiet "
            "--eval-batch-size 256 --triggered-test their-triggered --target 5 --out o");
}

TEST(ChildCommand, DefenseCellWithTriggerFileAndSharedRate) {
  ChildCommand defense = row();
  defense.subcommand = "erase";
  defense.model = "bd/model.pt";
  defense.trigger_file = "bd/trigger.png";
  defense.clean_indices = "clean_indices.txt";
  defense.run_options = {"--epochs", "10", "--teacher-epochs", "5"};
  defense.lr = 0.0123456789;
  defense.out = "o";
  EXPECT_EQ(command_line(defense),
            "erase --dataset cifar10 --data-dir data/cifar10 --seed 3 --threads 2 --device cpu "
            "--eval-batch-size 256 --attack badnets --target 5 --poison-rate 0.05 "
            "--trigger-file bd/trigger.png --model bd/model.pt --clean-indices clean_indices.txt "
            "--epochs 10 --teacher-epochs 5 --lr 0.0123457 --out o");
}

}  // namespace
}  // namespace nad::pipeline
