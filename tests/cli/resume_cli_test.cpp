// Faults on the real binary: a run killed (SIGKILL) or interrupted (SIGINT) and resumed ends
// with the same model, byte for byte, as one that ran straight through; a diverging run stops
// naming the step and keeps its last good state; a failed write leaves the old file intact;
// options are checked before any work.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

std::string file_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// metrics.csv without its seconds column, which differs between runs.
std::vector<std::string> metrics_without_time(const fs::path& file) {
  std::vector<std::string> rows;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) rows.push_back(line.substr(0, line.rfind(',')));
  return rows;
}

std::vector<fs::path> leftover_temporaries(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().filename().string().find(".tmp") != std::string::npos)
      found.push_back(entry.path());
  }
  return found;
}

class ResumeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_idx(dir_ / "data", 1600, 200, 16, 4, 21);
    data_ = " --dataset mnist --data-dir " + (dir_ / "data").string() +
            " --attack badnets --target 0 --poison-rate 0.1 --seed 4 --threads 1 --quiet";
    train_ = "train" + data_ + " --arch mnist-cnn --epochs 6 --crop-padding 1";
  }
  fs::path straight_run() {
    const fs::path out = dir_ / "straight";
    if (!fs::exists(out / "model.pt")) {
      CommandResult r = run_nad(train_ + " --out " + out.string());
      EXPECT_EQ(r.exit_code, 0) << r.output;
    }
    return out;
  }
  void expect_same_run(const fs::path& a, const fs::path& b) {
    EXPECT_EQ(file_bytes(a / "model.pt"), file_bytes(b / "model.pt"));
    EXPECT_EQ(metrics_without_time(a / "metrics.csv"), metrics_without_time(b / "metrics.csv"));
    const nlohmann::json sa = read_json(a / "summary.json"), sb = read_json(b / "summary.json");
    EXPECT_EQ(sa["clean_acc"], sb["clean_acc"]);
    EXPECT_EQ(sa["asr"], sb["asr"]);
    EXPECT_EQ(sb["complete"], true);
    EXPECT_FALSE(fs::exists(b / "state")) << "the state folder goes once the run completes";
  }
  TempDir dir_;
  std::string data_, train_;
};

TEST_F(ResumeCli, KilledTrainingResumesToTheSameModel) {
  const fs::path straight = straight_run();
  const fs::path out = dir_ / "killed";
  const int pid = start_nad(train_ + " --out " + out.string(), dir_ / "killed.log");
  ASSERT_TRUE(wait_for_file(out / "state" / "train.state", 120)) << read_text(dir_ / "killed.log");
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_nad(pid), 128 + SIGKILL);
  ASSERT_FALSE(fs::exists(out / "summary.json")) << "finished before it could be killed";

  // A fresh run into the folder would throw the work away: refused.
  CommandResult fresh = run_nad(train_ + " --out " + out.string());
  EXPECT_EQ(fresh.exit_code, 2) << fresh.output;
  EXPECT_NE(fresh.output.find("--resume"), std::string::npos) << fresh.output;

  // --resume alone repeats the saved command line.
  CommandResult resumed = run_nad("train --resume " + out.string() + " --threads 1");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_run(straight, out);
  EXPECT_TRUE(leftover_temporaries(out).empty());

  CommandResult again = run_nad("train --resume " + out.string());
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("nothing to resume"), std::string::npos) << again.output;
}

TEST_F(ResumeCli, InterruptedTrainingSavesStateAndResumesToTheSameModel) {
  const fs::path straight = straight_run();
  const fs::path out = dir_ / "interrupted";
  const int pid = start_nad(train_ + " --out " + out.string(), dir_ / "interrupted.log");
  ASSERT_TRUE(wait_for_file(out / "state" / "train.state", 120));
  kill(pid, SIGINT);
  EXPECT_EQ(wait_nad(pid), 128 + SIGINT) << read_text(dir_ / "interrupted.log");
  const std::string log = read_text(dir_ / "interrupted.log");
  EXPECT_NE(log.find("stopped by SIGINT"), std::string::npos) << log;
  const nlohmann::json partial = read_json(out / "summary.json");
  EXPECT_EQ(partial["complete"], false);
  EXPECT_EQ(partial["stopped_by"], "SIGINT");
  EXPECT_EQ(partial["resume"], "nad train --resume " + out.string());
  EXPECT_FALSE(fs::exists(out / "model.pt"));

  // The full command line with --resume works too, and must match the run's options.
  CommandResult other = run_nad(train_ + " --lr 0.1 --resume " + out.string());
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_NE(other.output.find("/train/lr"), std::string::npos) << other.output;
  CommandResult resumed = run_nad(train_ + " --resume " + out.string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_run(straight, out);
}

TEST_F(ResumeCli, ErasingKilledInTheStudentResumesToTheSameModel) {
  const fs::path model = straight_run() / "model.pt";
  const std::string erase = "erase" + data_ + " --model " + model.string() +
                            " --clean-ratio 0.25 --lr 0.01 --teacher-epochs 2 --epochs 4 --out ";
  CommandResult whole = run_nad(erase + (dir_ / "erase-a").string());
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  const fs::path out = dir_ / "erase-b";
  const int pid = start_nad(erase + out.string(), dir_ / "erase.log");
  ASSERT_TRUE(wait_for_file(out / "state" / "student-lr0.01.state", 120))
      << read_text(dir_ / "erase.log");
  kill(pid, SIGKILL);
  wait_nad(pid);
  ASSERT_FALSE(fs::exists(out / "summary.json"));
  CommandResult resumed = run_nad("erase --resume " + out.string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(file_bytes(dir_ / "erase-a" / "model.pt"), file_bytes(out / "model.pt"));
  EXPECT_EQ(file_bytes(dir_ / "erase-a" / "teacher.pt"), file_bytes(out / "teacher.pt"));
  EXPECT_EQ(read_json(dir_ / "erase-a" / "summary.json")["after"],
            read_json(out / "summary.json")["after"]);
}

TEST_F(ResumeCli, NonFiniteLossStopsTheRunAndKeepsTheLastGoodState) {
  const fs::path out = dir_ / "nan";
  setenv("NAD_TEST_NAN_AT", "train:3:2", 1);
  CommandResult r = run_nad(train_ + " --out " + out.string());
  unsetenv("NAD_TEST_NAN_AT");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("not finite at epoch 3, step 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cross-entropy nan"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 epochs done"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out / "model.pt")) << "no NaN model is written";
  const nlohmann::json partial = read_json(out / "summary.json");
  EXPECT_EQ(partial["complete"], false);
  EXPECT_EQ(partial["stopped_by"], "diverged");
  EXPECT_TRUE(fs::exists(out / "state" / "train.state"));

  // The saved state is the good one: resuming (here without the fault) completes the run.
  CommandResult resumed = run_nad("train --resume " + out.string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_run(straight_run(), out);
}

TEST_F(ResumeCli, AFailedWriteKeepsTheOldFiles) {
  const fs::path out = straight_run();
  const std::string model_before = file_bytes(out / "model.pt");
  const std::string summary_before = file_bytes(out / "summary.json");
  // Files may not grow past 64 KiB: the first state file cannot be written.
  const CommandResult r = run_shell("sh -c 'ulimit -f 128; exec " + std::string(NAD_BINARY) + " " +
                                    train_ + " --out " + out.string() + "'");
  const std::string& output = r.output;
  EXPECT_EQ(r.exit_code, 2) << output;
  EXPECT_NE(output.find("cannot write"), std::string::npos) << output;
  EXPECT_NE(output.find("train.state"), std::string::npos) << output;
  EXPECT_EQ(file_bytes(out / "model.pt"), model_before);
  EXPECT_EQ(file_bytes(out / "summary.json"), summary_before);
  EXPECT_TRUE(leftover_temporaries(out).empty());
}

TEST_F(ResumeCli, OptionMistakesFailBeforeAnyWork) {
  const std::string out = " --out " + (dir_ / "bad").string();
  struct Case {
    std::string args, expected;
  };
  const fs::path model = dir_ / "no-such-model.pt";
  const std::string train =
      "train --dataset mnist --data-dir " + (dir_ / "data").string() + " --quiet --epochs 1";
  const std::string bd = straight_run().string() + "/model.pt";
  const std::vector<Case> cases = {
      {train + " --arch mnist-cnn" + " --attack badnets --poison-rate 0",
       "--poison-rate must be in (0, 1]"},
      {train + " --arch mnist-cnn" + " --attack badnets --poison-rate 1.5",
       "--poison-rate must be in (0, 1]"},
      {train + " --arch wrn-15-1", "--arch wrn-15-1"},
      {train + " --arch alexnet", "unknown --arch 'alexnet'"},
      {train + " --arch mnist-cnn" + " --attack badnets --target 12",
       "--target 12 is not a class (0.."},
      {train + " --arch mnist-cnn" + " --attack badnets --target -1",
       "--target must be a class number"},
      {"train --dataset mnist --quiet --data-dir " + dir_.path().string(), "missing '"},
      {"finetune" + data_ + " --model " + model.string(), "no such file"},
      {"erase" + data_ + " --model " + bd + " --clean-ratio 0", "--clean-ratio must be in (0, 1]"},
      {"erase" + data_ + " --model " + bd + " --clean-ratio 1.2",
       "--clean-ratio must be in (0, 1]"},
      {"prune" + data_ + " --model " + bd + " --prune-ratio 0", "--prune-ratio must be in (0, 1]"},
      {"eval" + data_ + " --model " + bd + " --resume x", "--resume"},
  };

  for (const auto& c : cases) {
    CommandResult r = run_nad(c.args + out);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST_F(ResumeCli, ATeacherWhoseGroupsDoNotMatchIsRefusedBeforeTraining) {
  const fs::path model = straight_run() / "model.pt";
  // A WRN teacher for a mnist-cnn student: its groups are 16x16, 8x8, 4x4 against 8x8 and 4x4.
  CommandResult teacher =
      run_nad("train" + data_ + " --arch wrn-10-1 --epochs 0 --out " + (dir_ / "wrn").string());
  ASSERT_EQ(teacher.exit_code, 0) << teacher.output;
  CommandResult r = run_nad("erase" + data_ + " --model " + model.string() + " --teacher " +
                            (dir_ / "wrn" / "model.pt").string() + " --clean-ratio 0.25 --out " +
                            (dir_ / "mismatch").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--teacher"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("teacher epoch"), std::string::npos) << "refused before training";
}

}  // namespace
}  // namespace nad::test
