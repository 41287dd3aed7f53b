// nad_bench: times nad's own training and evaluation code on named workloads and writes one JSON
// file per run (machine, LibTorch version, per-phase wall times, images/s, FLOPs counted from
// the model's layer shapes, achieved FLOP/s against a convolution microbenchmark of the same
// shapes, and the final ACC/ASR so that speed is never bought with a wrong result).
//
//   nad_bench --workload eval,train-epoch,nad-protocol [--precision bf16] [--repeats 3]
//
// Workloads (CIFAR-10, WRN-16-1, BadNets grid with the given target):
//   eval          ACC and ASR of --model on the 10,000 clean and the triggered test images
//   train-epoch   one epoch of backdoored training from scratch on the 50,000 training images
//   nad-protocol  the NAD reference protocol: --model distilled from --teacher on 2,500 clean
//                 images for 20 epochs (batch 64), ACC and ASR before and after every epoch
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "nad/attacks/attack.h"
#include "nad/data/augment.h"
#include "nad/data/dataset.h"
#include "nad/defenses/clean_subset.h"
#include "nad/defenses/nad.h"
#include "nad/io/json.h"
#include "nad/models/checkpoint.h"
#include "nad/models/flops.h"
#include "nad/models/inference.h"
#include "nad/models/registry.h"
#include "nad/pipeline/context.h"
#include "nad/train/cuda_graph.h"
#include "nad/train/evaluate.h"
#include "nad/train/trainer.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"
#include "nad/util/threads.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchConfig {
  std::vector<std::string> workloads{"eval", "train-epoch", "nad-protocol"};
  std::string data_dir = "../shared/data/cifar10";
  std::string model = "bench/runs/attacks/badnets/train/model.pt";
  std::string teacher = "bench/runs/attacks/badnets/erase/teacher.pt";
  int64_t target = 5;
  std::string precision = "fp32";
  bool channels_last = true;
  bool split_eval = true;   // CPU evaluation batches split over single-threaded workers
  bool cuda_graphs = true;  // CUDA training steps replayed as captured graphs
  bool fused_eval = true;   // models' inference path (BatchNorm folded, in-place ops)
  int threads = 0;
  std::string device = "cpu";
  int repeats = 3;
  int64_t eval_batch_size = 0;  // 0: the device's default
  int protocol_epochs = 20;
  double protocol_lr = 0.01;
  uint64_t seed = 0;
  std::string out = "bench/results";
  std::string tag;  // appended to file names
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string read_first_line(const std::string& command) {
  std::string text;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[256];
    if (std::fgets(buffer, sizeof buffer, pipe)) text = buffer;
    ::pclose(pipe);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

json machine_json(const torch::Device& device, int threads) {
  std::string cpu = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  json machine = {{"cpu", cpu},
                  {"cores", std::thread::hardware_concurrency()},
                  {"threads", threads},
                  {"native_bf16", nad::cpu_has_native_bf16()},
                  {"libtorch", TORCH_VERSION}};
  if (device.is_cuda()) {
    machine["gpu"] =
        read_first_line("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null");
  }
  return machine;
}

// The ceiling: each distinct convolution shape of one forward pass run on its own, repeated
// until it has run for a while, in the run's precision and memory format. Returns FLOP/s for
// the whole set (total FLOPs over the sum of the best per-call times).
json convolution_ceiling(const nad::models::ForwardCost& cost, torch::Device device) {
  torch::InferenceMode inference;
  std::vector<nad::models::ConvolutionCall> distinct;
  std::vector<int> counts;
  for (const auto& call : cost.convolutions) {
    auto it = std::find_if(distinct.begin(), distinct.end(),
                           [&](const auto& d) { return d.same_shape(call); });
    if (it == distinct.end()) {
      distinct.push_back(call);
      counts.push_back(1);
    } else {
      ++counts[it - distinct.begin()];
    }
  }
  double flops = 0, seconds = 0;
  json shapes = json::array();
  for (size_t i = 0; i < distinct.size(); ++i) {
    const auto& call = distinct[i];
    torch::Tensor input = nad::to_memory_format(torch::rand(call.input).to(device));
    torch::Tensor weight = nad::to_memory_format(torch::rand(call.weight).to(device));
    nad::AutocastScope autocast(device);
    auto run = [&] {
      torch::Tensor y =
          torch::conv2d(input, weight, {}, call.stride, call.padding, call.dilation, call.groups);
      if (device.is_cuda()) torch::cuda::synchronize();
      return y;
    };
    for (int warm = 0; warm < 3; ++warm) run();
    double best = 1e30;
    const auto start = Clock::now();
    for (int k = 0; k < 5 || seconds_since(start) < 0.3; ++k) {
      const auto t = Clock::now();
      run();
      best = std::min(best, seconds_since(t));
    }
    flops += call.flops * counts[i];
    seconds += best * counts[i];
    shapes.push_back({{"input", call.input},
                      {"weight", call.weight},
                      {"stride", call.stride},
                      {"calls", counts[i]},
                      {"gflop_per_s", call.flops / best / 1e9}});
  }
  return {{"flop_per_s", seconds > 0 ? flops / seconds : 0.0},
          {"method",
           "each distinct convolution of one forward pass at the evaluation batch size, alone, "
           "best of repeated runs, same precision and memory format"},
          {"shapes", shapes}};
}

struct Timer {
  double seconds = 0;
  template <class F>
  auto operator()(F&& f) {
    const auto start = Clock::now();
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      seconds += seconds_since(start);
    } else {
      auto result = f();
      seconds += seconds_since(start);
      return result;
    }
  }
};

nad::models::Classifier load(const std::string& file, torch::Device device) {
  nad::models::LoadOptions options;
  options.input_shape = {3, 32, 32};
  options.device = device;
  return nad::models::load_checkpoint(file, options).model;
}

struct Shared {
  BenchConfig config;
  torch::Device device = torch::kCPU;
  nad::data::DatasetPair data;
  double load_seconds = 0;
  std::unique_ptr<nad::attacks::Attack> attack;
  double forward_flops_per_image = 0;
  json ceiling;
};

// The clean test images plus the triggered ones (those not already of the target class).
double test_images(const Shared& s) {
  const int64_t n = s.data.test.size();
  return static_cast<double>(n + n - s.data.test.labels.eq(s.config.target).sum().item<int64_t>());
}

// One timed repetition of a workload; returns its record.
// The evaluator of `nad eval`: the clean test set and, with an attack, its triggered version.
std::unique_ptr<nad::train::Evaluator> make_evaluator(const Shared& s) {
  std::optional<nad::data::TriggeredSet> triggered;
  if (s.attack) triggered = s.attack->triggered_test_set(s.data.test);
  return std::make_unique<nad::train::Evaluator>(s.data.test, triggered ? &*triggered : nullptr,
                                                 s.device, s.config.eval_batch_size);
}

json run_eval(const Shared& s) {
  Timer poison, evaluate;
  auto evaluator = poison([&] { return make_evaluator(s); });
  nad::models::Classifier model = load(s.config.model, s.device);
  const nad::train::Metrics metrics = evaluate([&] { return (*evaluator)(model); });
  const double images = test_images(s);
  return {{"phases", {{"poison", poison.seconds}, {"evaluate", evaluate.seconds}}},
          {"wall", poison.seconds + evaluate.seconds},
          {"images", images},
          {"images_per_s", images / evaluate.seconds},
          {"flops", images * s.forward_flops_per_image},
          {"flop_per_s", images * s.forward_flops_per_image / evaluate.seconds},
          {"result", metrics.to_json()}};
}

json run_train_epoch(const Shared& s) {
  Timer poison, train, evaluate;
  nad::attacks::PoisonedSet poisoned =
      poison([&] { return s.attack->poison(s.data.train, s.config.seed); });
  auto evaluator = poison([&] { return make_evaluator(s); });
  // Seeded as `nad train` does, so that every repeat trains the same model to the same numbers.
  torch::manual_seed(s.config.seed);
  nad::models::Classifier model = nad::models::create_model({"wrn-16-1", 3, 10, 32, 32});
  nad::train::TrainOptions options;
  options.epochs = 1;
  options.batch_size = 128;
  options.lr = 0.05;
  options.seed = s.config.seed;
  options.device = s.device;
  options.quiet = true;
  train([&] { nad::train::train_model(model, poisoned.data, options); });
  const nad::train::Metrics metrics = evaluate([&] { return (*evaluator)(model); });
  const double images = static_cast<double>(poisoned.data.size());
  const double flops = 3 * images * s.forward_flops_per_image;  // forward + backward
  return {{"phases",
           {{"poison", poison.seconds}, {"train", train.seconds}, {"evaluate", evaluate.seconds}}},
          {"wall", poison.seconds + train.seconds + evaluate.seconds},
          {"images", images},
          {"images_per_s", images / train.seconds},
          {"flops", flops},
          {"flop_per_s", flops / train.seconds},
          {"result", metrics.to_json()}};
}

json run_nad_protocol(const Shared& s) {
  Timer poison, first_evaluation, training, epoch_evaluations;
  auto evaluator = poison([&] { return make_evaluator(s); });
  nad::defenses::CleanData clean =
      nad::defenses::make_clean_data(s.data.train, 0.05, s.config.seed, 0);
  nad::models::Classifier student = load(s.config.model, s.device);
  nad::models::Classifier teacher = load(s.config.teacher, s.device);
  teacher->eval();
  nad::train::TrainOptions options;
  options.epochs = s.config.protocol_epochs;
  options.batch_size = 64;
  options.lr = s.config.protocol_lr;
  options.weight_decay = 1e-4;
  options.augment.cutout_holes = 3;
  options.augment.cutout_length = 4;
  options.augment.cutout_fill = nad::data::CutoutFill::kNoise;
  options.seed = s.config.seed;
  options.device = s.device;
  options.quiet = true;
  options.label = "student";
  const nad::train::Metrics before = first_evaluation([&] { return (*evaluator)(student); });
  nad::train::Metrics last = before;
  nad::train::EpochEvaluation each_epoch = [&](const nad::models::Classifier& m) {
    last = epoch_evaluations([&] { return (*evaluator)(m); });
    return std::optional<nad::train::Metrics>(last);
  };
  training([&] {
    nad::train::train_model(
        student, clean.train, options, each_epoch,
        nad::defenses::make_attention_loss(teacher, nad::models::default_betas(student), 2,
                                           nad::defenses::AttentionKind::kSumPower));
  });
  // `training` includes the evaluations after each epoch.
  const double train_seconds = training.seconds - epoch_evaluations.seconds;
  const double eval_seconds = first_evaluation.seconds + epoch_evaluations.seconds;
  const double evaluations = options.epochs + 1;
  const double eval_images = evaluations * test_images(s);
  const double train_images = static_cast<double>(clean.train.size()) * options.epochs;
  // Student forward and backward (about three forwards) plus the teacher's forward.
  const double train_flops = 4 * train_images * s.forward_flops_per_image;
  const double eval_flops = eval_images * s.forward_flops_per_image;
  return {{"phases",
           {{"poison", poison.seconds}, {"train", train_seconds}, {"evaluate", eval_seconds}}},
          {"wall", poison.seconds + first_evaluation.seconds + training.seconds},
          {"images", train_images + eval_images},
          {"train_images_per_s", train_images / train_seconds},
          {"eval_images_per_s", eval_images / eval_seconds},
          {"flops", train_flops + eval_flops},
          {"flop_per_s", (train_flops + eval_flops) / (train_seconds + eval_seconds)},
          {"result", {{"before", before.to_json()}, {"after", last.to_json()}}}};
}

std::string timestamp() {
  std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y%m%d-%H%M%S", std::gmtime(&now));
  return buffer;
}

int run(const BenchConfig& config) {
  Shared s;
  s.config = config;
  s.device = nad::pipeline::parse_device(config.device);
  if (s.config.eval_batch_size <= 0) {
    s.config.eval_batch_size = nad::train::default_eval_batch_size(s.device);
  }
  nad::set_threads(config.threads);
  nad::ComputeOptions compute;
  compute.precision = nad::parse_precision(config.precision);
  compute.channels_last = config.channels_last;
  compute.cuda_graphs = config.cuda_graphs;
  nad::set_compute_options(compute);
  nad::enable_single_thread_workers(config.split_eval);
  nad::models::set_inference_path_enabled(config.fused_eval);
  const int threads = at::get_num_threads();

  const auto load_start = Clock::now();
  s.data = nad::data::load_dataset({"cifar10", config.data_dir, 0});
  s.load_seconds = seconds_since(load_start);
  nad::attacks::AttackOptions attack;
  attack.name = "badnets";
  attack.target = config.target;
  s.attack = nad::attacks::create_attack(attack, 32, 32, 3, 10);
  s.attack->prepare(s.data.train);

  nad::models::Classifier probe = nad::models::create_model({"wrn-16-1", 3, 10, 32, 32});
  probe->to(s.device);
  const nad::models::ForwardCost cost = nad::models::measure_forward_cost(
      probe,
      nad::to_memory_format(torch::rand({s.config.eval_batch_size, 3, 32, 32}).to(s.device)));
  s.forward_flops_per_image = cost.total() / static_cast<double>(s.config.eval_batch_size);
  s.ceiling = convolution_ceiling(cost, s.device);
  std::fprintf(stderr, "WRN-16-1: %.1f MFLOP per image forward; convolution ceiling %.1f GFLOP/s\n",
               s.forward_flops_per_image / 1e6, s.ceiling["flop_per_s"].get<double>() / 1e9);

  std::filesystem::create_directories(config.out);
  for (const std::string& workload : config.workloads) {
    std::vector<json> runs;
    std::vector<double> walls;
    for (int r = 0; r < config.repeats; ++r) {
      json record;
      const int64_t replays_before = nad::train::CapturedWork::total_replays();
      if (workload == "eval") {
        record = run_eval(s);
      } else if (workload == "train-epoch") {
        record = run_train_epoch(s);
      } else if (workload == "nad-protocol") {
        record = run_nad_protocol(s);
      } else {
        throw nad::UserError("--workload: unknown workload '" + workload +
                             "' (eval, train-epoch, nad-protocol)");
      }
      record["phases"]["load"] = s.load_seconds;
      // Training steps that ran as a captured CUDA graph (the rest were launched one by one).
      record["cuda_graph_replays"] = nad::train::CapturedWork::total_replays() - replays_before;
      std::fprintf(stderr, "%s %d/%d: %.2f s, %s\n", workload.c_str(), r + 1, config.repeats,
                   record["wall"].get<double>(), record["result"].dump().c_str());
      walls.push_back(record["wall"].get<double>());
      runs.push_back(record);
    }
    const double median_wall = median(walls);
    const json& median_run =
        *std::min_element(runs.begin(), runs.end(), [&](const json& a, const json& b) {
          return std::abs(a["wall"].get<double>() - median_wall) <
                 std::abs(b["wall"].get<double>() - median_wall);
        });
    const double achieved = median_run["flop_per_s"].get<double>();
    json doc = {
        {"workload", workload},
        {"machine", machine_json(s.device, threads)},
        {"device", s.device.str()},
        {"precision", config.precision},
        {"channels_last", config.channels_last},
        {"split_eval", config.split_eval},
        {"fused_eval", config.fused_eval},
        {"cuda_graphs", s.device.is_cuda() && config.cuda_graphs},
        {"eval_batch_size", s.config.eval_batch_size},
        {"seed", config.seed},
        {"model", workload == "train-epoch" ? json("wrn-16-1 (fresh)") : json(config.model)},
        {"forward_flops_per_image", s.forward_flops_per_image},
        {"median_wall_s", median_wall},
        {"median_run", median_run},
        {"achieved_flop_per_s", achieved},
        {"ceiling", s.ceiling},
        {"ratio_to_ceiling", achieved / s.ceiling["flop_per_s"].get<double>()},
        {"runs", runs}};
    if (workload == "nad-protocol") {
      doc["teacher"] = config.teacher;
      doc["protocol"] = {{"clean_images", 2500},
                         {"epochs", config.protocol_epochs},
                         {"batch_size", 64},
                         {"lr", config.protocol_lr}};
    }
    std::string name = workload + "-" + (s.device.is_cuda() ? "cuda" : "cpu") + "-" +
                       config.precision + (config.tag.empty() ? "" : "-" + config.tag) + "-" +
                       timestamp() + ".json";
    nad::io::write_json(std::filesystem::path(config.out) / name, doc);
    std::fprintf(stderr, "%s: median %.2f s (%s) -> %s\n", workload.c_str(), median_wall,
                 config.precision.c_str(), (std::filesystem::path(config.out) / name).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  BenchConfig config;
  CLI::App app{"nad_bench: timed workloads of nad's training and evaluation code"};
  std::string workloads = "eval,train-epoch,nad-protocol";
  app.add_option("--workload", workloads, "comma-separated: eval, train-epoch, nad-protocol")
      ->capture_default_str();
  app.add_option("--data-dir", config.data_dir, "CIFAR-10 folder")->capture_default_str();
  app.add_option("--model", config.model, "backdoored WRN-16-1 (eval, nad-protocol)")
      ->capture_default_str();
  app.add_option("--teacher", config.teacher, "NAD teacher (nad-protocol)")->capture_default_str();
  app.add_option("--target", config.target, "BadNets target label of --model")
      ->capture_default_str();
  app.add_option("--precision", config.precision, "fp32 | bf16")->capture_default_str();
  app.add_option("--channels-last", config.channels_last, "channels-last memory format")
      ->capture_default_str();
  app.add_option("--split-eval", config.split_eval,
                 "CPU evaluation: each thread runs its share of the batches single-threaded")
      ->capture_default_str();
  app.add_option("--fused-eval", config.fused_eval,
                 "models' inference path: BatchNorm folded into the convolution before it, "
                 "in-place ReLU and additions")
      ->capture_default_str();
  app.add_option("--cuda-graphs", config.cuda_graphs,
                 "CUDA: full training batches replayed as captured CUDA graphs")
      ->capture_default_str();
  app.add_option("--threads", config.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--device", config.device, "cpu or cuda[:N]")->capture_default_str();
  app.add_option("--repeats", config.repeats, "runs per workload (the median is reported)")
      ->capture_default_str();
  app.add_option("--eval-batch-size", config.eval_batch_size,
                 "evaluation batch size (0: 64 on the CPU, 1024 on CUDA)")
      ->capture_default_str();
  app.add_option("--protocol-epochs", config.protocol_epochs)->capture_default_str();
  app.add_option("--protocol-lr", config.protocol_lr)->capture_default_str();
  app.add_option("--seed", config.seed)->capture_default_str();
  app.add_option("--out", config.out, "folder of the JSON results")->capture_default_str();
  app.add_option("--tag", config.tag, "added to the file names");
  CLI11_PARSE(app, argc, argv);
  config.workloads.clear();
  std::stringstream list(workloads);
  for (std::string item; std::getline(list, item, ',');) {
    if (!item.empty()) config.workloads.push_back(item);
  }
  try {
    return run(config);
  } catch (const nad::UserError& e) {
    std::fprintf(stderr, "nad_bench: %s\n", e.what());
    return 2;
  }
}
