#include <cstdio>
#include <filesystem>
#include <sstream>

#include "nad/pipeline/runs.h"
#include "nad/train/report.h"
#include "nad/util/files.h"

namespace nad::pipeline {

nlohmann::json run_demo(const DemoConfig& config) {
  const std::filesystem::path out = config.out;
  CommonConfig common;
  common.dataset.name = "fashion-mnist";
  common.dataset.data_dir = config.data_dir;
  common.attack.name = "badnets";
  common.attack.trigger = "grid";
  common.attack.target = 0;
  common.attack.poison_rate = 0.1;
  common.seed = config.seed;
  common.threads = config.threads;
  common.device = config.device;
  // The README's expected numbers (their spread over seeds and thread counts) are fp32's; with
  // --precision auto a CPU with AMX would compute the demo in bf16 and land elsewhere. The demo's
  // small CNN gains little from bf16 anyway.
  common.precision = "fp32";

  std::fprintf(
      stderr,
      "== 1/2: training a backdoored mnist-cnn on Fashion-MNIST (BadNets grid, target 0, 10%%)\n");
  TrainConfig train;
  train.common = common;
  train.common.out = (out / "backdoored").string();
  // A demo stopped part-way (Ctrl-C) continues where it was when run again.
  if (std::filesystem::exists(out / "backdoored" / "state" / "args.json"))
    train.common.resume = train.common.out;
  train.arch = "mnist-cnn";
  train.epochs = config.train_epochs;
  const nlohmann::json trained = run_train(train);

  std::fprintf(stderr, "== 2/2: erasing the backdoor with NAD from 5%% clean training data\n");
  EraseConfig erase;
  erase.defense.common = common;
  erase.defense.common.out = (out / "erased").string();
  if (std::filesystem::exists(out / "erased" / "state" / "args.json"))
    erase.defense.common.resume = erase.defense.common.out;
  erase.defense.model = (out / "backdoored" / "model.pt").string();
  const nlohmann::json erased = run_erase(erase);

  auto metrics = [](const nlohmann::json& j) {
    train::Metrics m;
    m.clean_acc = j["clean_acc"].get<double>();
    m.asr = j["asr"].get<double>();
    m.robust_acc = j["robust_acc"].get<double>();
    return m;
  };
  const std::string table = train::metrics_table(
      {{"backdoored", metrics(erased["before"])}, {"after NAD", metrics(erased["after"])}});
  nlohmann::json summary = {{"before", erased["before"]},
                            {"after", erased["after"]},
                            {"teacher", erased["teacher"]},
                            {"train_seconds", trained["seconds"]},
                            {"erase_seconds", erased["seconds"]}};
  std::ostringstream report;
  report
      << "# nad demo\n\nFashion-MNIST, mnist-cnn, BadNets grid trigger, target 0, 10% poisoning, "
      << config.train_epochs << " training epochs; NAD from 5% clean training data with default "
      << "settings (seed " << config.seed << ").\n\n"
      << table
      << "\nDetails: `backdoored/` and `erased/` (config.json, metrics.csv, summary.json).\n";
  write_text_atomic(out / "report.md", report.str());
  nad::write_text_atomic(out / "summary.json", summary.dump(2) + "\n");
  std::printf("\n%s\nreport: %s\n", table.c_str(), (out / "report.md").string().c_str());
  return summary;
}

}  // namespace nad::pipeline
