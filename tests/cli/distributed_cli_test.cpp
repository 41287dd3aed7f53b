// Data-parallel runs through the real CLI, over c10d with Gloo on the loopback interface: two
// processes train the same weights as one, and a rank that dies or never comes ends the
// others with an error instead of a hang.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "nad/dist/launch.h"
#include "nad/models/checkpoint.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

// Starts `nad args` as one rank of a distributed run, its output going to `log`.
pid_t start_rank(int rank, int world_size, int port, const std::string& args,
                 const std::filesystem::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("RANK", std::to_string(rank).c_str(), 1);
    setenv("WORLD_SIZE", std::to_string(world_size).c_str(), 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    const std::string command =
        std::string(NAD_BINARY) + " " + args + " > " + log.string() + " 2>&1";
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits for `pid` at most `limit`; returns its exit code, or -1 when it was still running (it
// is then killed).
int wait_for(pid_t pid, std::chrono::seconds limit, double* seconds = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < limit) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      if (seconds)
        *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// The largest difference between two checkpoints' parameters and floating-point buffers.
double largest_difference(const std::filesystem::path& a_file,
                          const std::filesystem::path& b_file) {
  models::LoadOptions load;
  load.input_shape = {1, 16, 16};
  models::LoadedModel a = models::load_checkpoint(a_file, load);
  models::LoadedModel b = models::load_checkpoint(b_file, load);
  auto b_parameters = b.model->named_parameters();
  auto b_buffers = b.model->named_buffers();
  double largest = 0;
  for (const auto& item : a.model->named_parameters()) {
    largest =
        std::max(largest, (item.value() - b_parameters[item.key()]).abs().max().item<double>());
  }
  for (const auto& item : a.model->named_buffers()) {
    if (!item.value().is_floating_point()) continue;
    largest = std::max(largest, (item.value() - b_buffers[item.key()]).abs().max().item<double>());
  }
  return largest;
}

TEST(DistributedCli, TwoGlooProcessesTrainTheWeightsOfOne) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 600, 200, 16, 4, 21);
  // mnist-cnn has no BatchNorm, so two shards of each batch give the one-process gradient.
  const std::string train = "train --dataset mnist --data-dir " + (dir / "data").string() +
                            " --attack badnets --target 0 --poison-rate 0.1 --arch mnist-cnn "
                            "--epochs 2 --batch-size 64 --lr 0.05 --threads 1 --quiet --out ";
  CommandResult one = run_nad(train + (dir / "one").string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  CommandResult two = run_nad("launch --nproc 2 -- nad " + train + (dir / "two").string());
  ASSERT_EQ(two.exit_code, 0) << two.output;

  const double largest = largest_difference(dir / "one" / "model.pt", dir / "two" / "model.pt");
  EXPECT_LT(largest, 1e-5);
  // The test sets were measured in two shards and summed: same numbers.
  const nlohmann::json s1 = read_json(dir / "one" / "summary.json");
  const nlohmann::json s2 = read_json(dir / "two" / "summary.json");
  EXPECT_NEAR(s1["clean_acc"].get<double>(), s2["clean_acc"].get<double>(), 0.51);
  EXPECT_NEAR(s1["asr"].get<double>(), s2["asr"].get<double>(), 0.51);
  EXPECT_GT(s2["asr"].get<double>(), 80.0) << "the backdoor was not learnt";
  EXPECT_EQ(read_json(dir / "two" / "config.json")["common"]["world_size"], 2);

  // NAD's teacher finetuning and student distillation shard the same way: the attention loss,
  // like cross-entropy, is a mean over the shard.
  const std::string erase = "erase --dataset mnist --data-dir " + (dir / "data").string() +
                            " --attack badnets --target 0 --model " +
                            (dir / "one" / "model.pt").string() +
                            " --clean-ratio 0.5 --lr 0.01 --teacher-epochs 1 --epochs 1 "
                            "--threads 1 --quiet --out ";
  CommandResult erased_one = run_nad(erase + (dir / "erase-one").string());
  ASSERT_EQ(erased_one.exit_code, 0) << erased_one.output;
  CommandResult erased_two =
      run_nad("launch --nproc 2 -- nad " + erase + (dir / "erase-two").string());
  ASSERT_EQ(erased_two.exit_code, 0) << erased_two.output;
  EXPECT_LT(largest_difference(dir / "erase-one" / "model.pt", dir / "erase-two" / "model.pt"),
            1e-5);
}

// A Ctrl-C reaches every rank through nad launch; they agree (through the per-step
// all-reduce) to stop after the same step and save one state, and the run resumed under launch
// ends with the bytes of one never stopped.
TEST(DistributedCli, InterruptedRanksStopTogetherAndResume) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 1600, 200, 16, 4, 21);
  const std::string train = "launch --nproc 2 -- nad train --dataset mnist --data-dir " +
                            (dir / "data").string() +
                            " --attack badnets --target 0 --poison-rate 0.1 --arch mnist-cnn "
                            "--epochs 12 --threads 1 --quiet --out ";
  CommandResult straight = run_nad(train + (dir / "straight").string());
  ASSERT_EQ(straight.exit_code, 0) << straight.output;

  const std::filesystem::path out = dir / "stopped";
  const int pid = start_nad(train + out.string(), dir / "stopped.log");
  ASSERT_TRUE(wait_for_file(out / "state" / "train.state", 120)) << read_text(dir / "stopped.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // into the next epoch
  kill(pid, SIGINT);
  EXPECT_EQ(wait_nad(pid), 128 + SIGINT) << read_text(dir / "stopped.log");
  // Each rank says where it stopped: the same place.
  std::vector<std::string> stops;
  std::istringstream log(read_text(dir / "stopped.log"));
  for (std::string line; std::getline(log, line);) {
    if (line.find("stopped by SIGINT") != std::string::npos) stops.push_back(line);
  }
  ASSERT_EQ(stops.size(), 2u) << read_text(dir / "stopped.log");
  EXPECT_EQ(stops[0], stops[1]);
  EXPECT_EQ(read_json(out / "summary.json")["complete"], false);

  CommandResult resumed = run_nad(train + out.string() + " --resume " + out.string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_text(out / "model.pt"), read_text(dir / "straight" / "model.pt"));
}

TEST(DistributedCli, SyncBatchNormTrainsTheWeightsOfOneProcess) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 256, 100, 16, 4, 24);
  // WRN-16-1 has BatchNorm everywhere: with --sync-bn each rank normalises with the statistics
  // of the whole global batch, as one process does; without it, with its half's. (Two steps
  // only: sync-bn computes the same statistics in another order, and the last bits of that
  // difference grow over many steps.)
  const std::string train = "train --dataset mnist --data-dir " + (dir / "data").string() +
                            " --arch wrn-16-1 --epochs 1 --batch-size 128 --lr 0.01 --threads 1 "
                            "--quiet --out ";
  ASSERT_EQ(run_nad(train + (dir / "one").string()).exit_code, 0);
  CommandResult synced =
      run_nad("launch --nproc 2 -- nad " + train + (dir / "synced").string() + " --sync-bn");
  ASSERT_EQ(synced.exit_code, 0) << synced.output;
  CommandResult local = run_nad("launch --nproc 2 -- nad " + train + (dir / "local").string());
  ASSERT_EQ(local.exit_code, 0) << local.output;
  const double with_sync =
      largest_difference(dir / "one" / "model.pt", dir / "synced" / "model.pt");
  const double without = largest_difference(dir / "one" / "model.pt", dir / "local" / "model.pt");
  // Measured: 1.2e-4 (running variances and weights; float summation order) against 2.4e-2.
  EXPECT_LT(with_sync, 1e-3);
  EXPECT_GT(without, 20 * with_sync);
  std::fprintf(stderr, "largest difference from one process: sync-bn %g, per-rank BN %g\n",
               with_sync, without);
}

TEST(DistributedCli, ADeadRankEndsTheOtherWithinTheTimeout) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 2000, 100, 16, 4, 22);
  const int port = dist::free_local_port();
  const std::string train = "train --dataset mnist --data-dir " + (dir / "data").string() +
                            " --arch mnist-cnn --epochs 200 --batch-size 32 --threads 1 "
                            "--dist-timeout 10 --out " +
                            (dir / "run").string();
  const pid_t rank0 = start_rank(0, 2, port, train, dir / "rank0.log");
  const pid_t rank1 = start_rank(1, 2, port, train, dir / "rank1.log");
  // Kill rank 1 once training is under way (rank 0 has finished an epoch).
  const auto start = std::chrono::steady_clock::now();
  while (read_text(dir / "rank0.log").find("epoch 1/200") == std::string::npos &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(read_text(dir / "rank0.log").find("epoch 1/200"), std::string::npos)
      << read_text(dir / "rank0.log");
  kill(rank1, SIGKILL);
  waitpid(rank1, nullptr, 0);
  double seconds = 0;
  const int code = wait_for(rank0, std::chrono::seconds(60), &seconds);
  EXPECT_EQ(code, 1) << read_text(dir / "rank0.log");
  EXPECT_LT(seconds, 30);  // --dist-timeout 10, with room for a loaded machine
  EXPECT_NE(read_text(dir / "rank0.log").find("another rank died"), std::string::npos)
      << read_text(dir / "rank0.log");
}

TEST(DistributedCli, ARendezvousThatNeverCompletesIsAnError) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 100, 50, 16, 4, 23);
  const pid_t rank0 =
      start_rank(0, 2, dist::free_local_port(),
                 "eval --dataset mnist --data-dir " + (dir / "data").string() +
                     " --model missing.pt --dist-timeout 2 --out " + (dir / "run").string(),
                 dir / "rank0.log");
  double seconds = 0;
  EXPECT_EQ(wait_for(rank0, std::chrono::seconds(60), &seconds), 2) << read_text(dir / "rank0.log");
  EXPECT_LT(seconds, 30);
  EXPECT_NE(read_text(dir / "rank0.log").find("did not complete"), std::string::npos)
      << read_text(dir / "rank0.log");
}

TEST(DistributedCli, LaunchStopsTheOthersWhenOneFails) {
  // A command that fails at once in every rank: launch reports the code, leaves none behind.
  TempDir dir;
  CommandResult result =
      run_nad("launch --nproc 2 -- nad eval --dataset mnist --data-dir " +
              (dir / "missing").string() + " --model x.pt --out " + (dir / "out").string());
  EXPECT_EQ(result.exit_code, 2) << result.output;
}

}  // namespace
}  // namespace nad::test
