// `nad table` on experiments/smoke.json: the grid runs, the table has the paper's shape, and a
// second run resumes instead of re-running.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "nad/io/figure.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

// Writes `experiment` to DIR/NAME.json and runs `nad table` on it with the generated data in
// DIR/data, into DIR/OUT.
CommandResult run_table(const std::filesystem::path& dir, const nlohmann::json& experiment,
                        const std::string& name, const std::string& out) {
  const std::filesystem::path file = dir / (name + ".json");
  {
    std::ofstream stream(file);
    stream << experiment.dump();
  }
  return run_nad("table --config " + file.string() + " --data-dir " + (dir / "data").string() +
                 " --quiet --out " + (dir / out).string());
}

TEST(TableCli, SmokeGridRunsAndResumes) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 3000, 600, 16, 4, 11);
  const std::string smoke = std::string(NAD_EXPERIMENTS_DIR) + "/smoke.json";
  const std::string args = "table --config " + smoke + " --data-dir " + (dir / "data").string() +
                           " --quiet --out " + (dir / "grid").string();
  CommandResult first = run_nad(args);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::filesystem::path grid = dir / "grid";
  const nlohmann::json results = read_json(grid / "results.json");
  EXPECT_EQ(results["cells_run"], 5);  // the backdoored model and four defenses
  EXPECT_TRUE(results["complete"].get<bool>());
  ASSERT_EQ(results["rows"].size(), 1u);
  const nlohmann::json row = results["rows"][0];
  EXPECT_EQ(row["attack"], "badnets");
  EXPECT_GT(row["before"]["asr"].get<double>(), 80.0) << "the backdoor was not learnt";
  for (const char* name : {"Finetuning", "Fine-pruning", "MCR", "NAD"}) {
    ASSERT_TRUE(row["defenses"][name]["after"].is_object()) << name;
    EXPECT_TRUE(row["defenses"][name]["der"].is_number()) << name;
  }
  // Every defense used the one clean subset the table drew.
  const std::string indices = read_text(grid / "fashion-mnist" / "clean_indices.txt");
  for (const char* folder : {"finetuning", "fine-pruning", "mcr", "nad"}) {
    EXPECT_EQ(read_text(grid / "fashion-mnist" / "badnets" / folder / "clean_indices.txt"), indices)
        << folder;
  }
  const std::string table = read_text(grid / "table.md");
  EXPECT_NE(table.find("| Attack | Before ASR | Before ACC | Finetuning ASR |"), std::string::npos)
      << table;
  EXPECT_NE(table.find("| badnets |"), std::string::npos) << table;
  EXPECT_NE(table.find("| **Average** |"), std::string::npos) << table;
  EXPECT_NE(table.find("| NAD |"), std::string::npos) << table;  // the DER table
  EXPECT_NE(read_text(grid / "table.csv").find("fashion-mnist,badnets,"), std::string::npos);
  if (io::figures_available()) {
    EXPECT_TRUE(std::filesystem::exists(grid / "curves" / "fashion-mnist-badnets-nad.png"));
    EXPECT_TRUE(std::filesystem::exists(grid / "curves" / "fashion-mnist-badnets-mcr-t.png"));
  }

  // Nothing is re-run, even on another thread count; a cell whose run was interrupted (no
  // summary.json) is.
  const auto model = grid / "fashion-mnist" / "badnets" / "backdoored" / "model.pt";
  const auto stamp = std::filesystem::last_write_time(model);
  CommandResult second = run_nad(args + " --threads 3");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(read_json(grid / "results.json")["cells_run"], 0);
  EXPECT_EQ(std::filesystem::last_write_time(model), stamp);
  std::filesystem::remove(grid / "fashion-mnist" / "badnets" / "mcr" / "summary.json");
  CommandResult third = run_nad(args);
  ASSERT_EQ(third.exit_code, 0) << third.output;
  EXPECT_EQ(read_json(grid / "results.json")["cells_run"], 1);
  EXPECT_EQ(read_json(grid / "results.json")["rows"][0]["defenses"]["MCR"]["after"],
            results["rows"][0]["defenses"]["MCR"]["after"]);  // same seed, same numbers

  // Shards split rows: the smoke grid's one row is shard 0's, so shard 1 of 2 runs nothing, and
  // --merge writes the one table from the finished cells, or names a missing one.
  CommandResult shard = run_nad(args + " --shard 1/2");
  ASSERT_EQ(shard.exit_code, 0) << shard.output;
  EXPECT_EQ(read_json(grid / "results-shard-1-of-2.json")["cells_run"], 0);
  EXPECT_EQ(read_json(grid / "results-shard-1-of-2.json")["rows"].size(), 0u);
  const std::string before_merge = read_text(grid / "table.md");
  CommandResult merged = run_nad(args + " --merge");
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_EQ(read_text(grid / "table.md"), before_merge);
  const std::string empty_grid = (dir / "empty").string();
  CommandResult early = run_nad("table --config " + smoke + " --data-dir " +
                                (dir / "data").string() + " --quiet --merge --out " + empty_grid);
  EXPECT_EQ(early.exit_code, 2) << early.output;
  EXPECT_NE(early.output.find("not finished"), std::string::npos) << early.output;
  EXPECT_EQ(run_nad(args + " --shard 2/2").exit_code, 2);

  // A finished cell made with other options is an error, not a stale number.
  nlohmann::json changed = read_json(smoke);
  changed["defense_options"] = "--lr 0.02 --epochs 1 --crop-padding 0";
  {
    std::ofstream out(dir / "changed.json");
    out << changed.dump();
  }
  CommandResult stale =
      run_nad("table --config " + (dir / "changed.json").string() + " --data-dir " +
              (dir / "data").string() + " --quiet --out " + grid.string());
  EXPECT_EQ(stale.exit_code, 2);
  EXPECT_NE(stale.output.find("other options"), std::string::npos) << stale.output;

  changed["attacks"] = "badnets";
  {
    std::ofstream out(dir / "bad.json");
    out << changed.dump();
  }
  CommandResult bad =
      run_nad("table --config " + (dir / "bad.json").string() + " --out " + (dir / "g2").string());
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("'attacks' must be a non-empty list"), std::string::npos) << bad.output;
}

// A defense run with --verify adds the table of what a defender sees without attack knowledge:
// Neural Cleanse's largest anomaly index before -> after and the reversed trigger's success.
TEST(TableCli, VerifiedDefensesGetTheirOwnTable) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 1500, 300, 16, 4, 12);
  nlohmann::json experiment = read_json(std::string(NAD_EXPERIMENTS_DIR) + "/smoke.json");
  experiment["train"] = "--arch mnist-cnn --epochs 4 --crop-padding 0 --flip false";
  experiment["defenses"] = nlohmann::json::array({"finetune",
                                                  {{"command", "finetune"},
                                                   {"name", "FT verified"},
                                                   {"options",
                                                    "--verify "
                                                    "--scan-epochs 3"}}});
  CommandResult r = run_table(dir.path(), experiment, "verify", "grid");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json row = read_json(dir / "grid" / "results.json")["rows"][0];
  const nlohmann::json verify = row["defenses"]["FT verified"]["summary"]["verify"];
  ASSERT_TRUE(verify.is_object()) << row.dump(1);
  EXPECT_TRUE(row["defenses"]["Finetuning"]["summary"]["verify"].is_null());
  const std::string table = read_text(dir / "grid" / "table.md");
  EXPECT_NE(table.find("## Verification without attack knowledge"), std::string::npos) << table;
  EXPECT_NE(table.find("| Attack | Finetuning NC index | Finetuning RT % | FT verified NC index |"),
            std::string::npos)
      << table;
  // The verified cell's numbers, as summary.json has them; the other defense's are dashes.
  char expected[128];
  std::snprintf(expected, sizeof expected, "| fashion-mnist badnets | - | - | %.2f (%lld)",
                verify["before"]["max_anomaly_index"].get<double>(),
                static_cast<long long>(verify["before"]["most_anomalous"].get<int64_t>()));
  EXPECT_NE(table.find(expected), std::string::npos) << expected << "\n" << table;
}

// shared_lr: the finetune defense searches its rate (run first although listed last) and the
// row's other defenses are given that rate; one that sets its own keeps it.
TEST(TableCli, SharedLrGivesTheFinetuneSearchsRateToTheOtherDefenses) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 1500, 300, 16, 4, 13);
  nlohmann::json experiment = read_json(std::string(NAD_EXPERIMENTS_DIR) + "/smoke.json");
  experiment["train"] = "--arch mnist-cnn --epochs 4 --crop-padding 0 --flip false";
  experiment["defense_options"] = "--epochs 1 --crop-padding 0 --lr-grid 0.005,0.01";
  experiment["shared_lr"] = true;
  experiment["defenses"] = nlohmann::json::array(
      {{{"command", "erase"}, {"options", "--teacher-epochs 1"}},
       {{"command", "finetune"}, {"name", "FT fixed"}, {"options", "--lr 0.003"}},
       "finetune"});
  CommandResult r = run_table(dir.path(), experiment, "shared", "grid");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json row = read_json(dir / "grid" / "results.json")["rows"][0];
  const double chosen = row["defenses"]["Finetuning"]["summary"]["lr"].get<double>();
  EXPECT_TRUE(chosen == 0.005 || chosen == 0.01) << chosen;
  EXPECT_DOUBLE_EQ(row["shared_lr"].get<double>(), chosen);
  const nlohmann::json nad_lr = row["defenses"]["NAD"]["summary"]["lr"];
  EXPECT_DOUBLE_EQ(nad_lr["teacher"].get<double>(), chosen);
  EXPECT_DOUBLE_EQ(nad_lr["student"].get<double>(), chosen);
  EXPECT_TRUE(row["defenses"]["NAD"]["summary"]["lr_search"]["teacher"].is_null());
  EXPECT_DOUBLE_EQ(row["defenses"]["FT fixed"]["summary"]["lr"].get<double>(), 0.003);
  EXPECT_NE(read_text(dir / "grid" / "table.md").find("One learning rate per model"),
            std::string::npos);

  // Without a finetune defense that searches, there is no rate to share.
  experiment["defenses"] = nlohmann::json::array({"erase"});
  CommandResult bad = run_table(dir.path(), experiment, "bad", "bad");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("shared_lr needs a finetune defense"), std::string::npos) << bad.output;
}

// The soak test in small (bench/soak_table.sh kills it 20 times): the table killed outright
// (SIGKILL, its running cell with it) at three moments and resumed each time with --resume
// ends with the same table and the same models as a run left alone.
TEST(TableCli, KilledAndResumedGivesTheSameTable) {
  TempDir dir;
  write_synthetic_idx(dir / "data", 3000, 600, 16, 4, 11);
  const std::string smoke = std::string(NAD_EXPERIMENTS_DIR) + "/smoke.json";
  const std::string args = "table --config " + smoke + " --data-dir " + (dir / "data").string() +
                           " --quiet --threads 1 --out ";
  const auto start = std::chrono::steady_clock::now();
  CommandResult straight = run_nad(args + (dir / "straight").string());
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const std::filesystem::path soaked = dir / "soaked";
  int kills = 0;
  for (double share : {0.15, 0.2, 0.25}) {
    const std::string command =
        kills == 0 ? args + soaked.string() : "table --quiet --resume " + soaked.string();
    const int pid = start_nad(command, dir / ("run" + std::to_string(kills) + ".log"));
    std::this_thread::sleep_for(std::chrono::duration<double>(share * seconds));
    if (kill(pid, SIGKILL) == 0) ++kills;
    wait_nad(pid);
  }
  EXPECT_EQ(kills, 3);
  EXPECT_FALSE(std::filesystem::exists(soaked / "results.json") &&
               read_json(soaked / "results.json").value("complete", false))
      << "finished before the last kill: nothing was tested";
  CommandResult resumed = run_nad("table --quiet --resume " + soaked.string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_text(soaked / "table.md"), read_text(dir / "straight" / "table.md"));
  EXPECT_EQ(read_text(soaked / "table.csv"), read_text(dir / "straight" / "table.csv"));
  int models = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir / "straight")) {
    if (entry.path().extension() != ".pt") continue;
    ++models;
    const auto relative = std::filesystem::relative(entry.path(), dir / "straight");
    EXPECT_EQ(read_text(entry.path()), read_text(soaked / relative)) << relative;
  }
  EXPECT_GE(models, 5);
}

}  // namespace
}  // namespace nad::test
