#include "nad/util/precision_choice.h"

#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "nad/util/files.h"

namespace nad {

namespace fs = std::filesystem;

nlohmann::json PrecisionChoice::to_json() const {
  nlohmann::json j = {{"chosen", precision_name(precision)},
                      {"reason", reason},
                      {"machine", machine},
                      {"from_cache", from_cache}};
  if (timing) {
    j["fp32_step_ms"] = timing->fp32_ms;
    j["bf16_step_ms"] = timing->bf16_ms;
    j["bf16_loss_difference"] = timing->loss_difference;
  }
  return j;
}

PrecisionChoice decide_precision(const PrecisionTiming& timing) {
  PrecisionChoice choice;
  choice.timing = timing;
  char text[200];
  const double speedup = timing.bf16_ms > 0 ? timing.fp32_ms / timing.bf16_ms : 0;
  if (!(timing.loss_difference <= kMaxLossDifference)) {
    std::snprintf(text, sizeof text, "bf16 changed the benchmark loss by %.1f%% (limit %.0f%%)",
                  100 * timing.loss_difference, 100 * kMaxLossDifference);
  } else if (speedup >= kBf16SpeedupNeeded) {
    choice.precision = Precision::kBf16;
    std::snprintf(text, sizeof text, "bf16 trains %.2fx faster than fp32 here", speedup);
  } else {
    std::snprintf(text, sizeof text, "bf16 is %s here (%.2fx fp32's speed; needs %.1fx)",
                  speedup < 1 ? "slower than fp32" : "not clearly faster", speedup,
                  kBf16SpeedupNeeded);
  }
  choice.reason = text;
  return choice;
}

namespace {

// A small CIFAR-style network as plain tensors, so that measuring touches neither the global
// random generator (the run's numbers must not depend on whether the cache was warm) nor any
// module registry.
struct BenchNet {
  std::vector<torch::Tensor> conv;  // 3->16, 16->32 (stride 2), 32->64 (stride 2)
  torch::Tensor fc;
};

BenchNet make_bench_net(at::Generator& gen, torch::Device device) {
  BenchNet net;
  const int64_t channels[4] = {3, 16, 32, 64};
  for (int i = 0; i < 3; ++i) {
    net.conv.push_back(to_memory_format(
        (torch::randn({channels[i + 1], channels[i], 3, 3}, gen) / std::sqrt(9.0 * channels[i]))
            .to(device)
            .requires_grad_()));
  }
  net.fc = (torch::randn({10, 64}, gen) / 8).to(device).requires_grad_();
  return net;
}

torch::Tensor bench_loss(const BenchNet& net, const torch::Tensor& images,
                         const torch::Tensor& labels) {
  torch::Tensor x = images;
  for (size_t i = 0; i < net.conv.size(); ++i) {
    x = torch::conv2d(x, net.conv[i], {}, i == 0 ? 1 : 2, 1);
    x = torch::relu(torch::batch_norm(x, {}, {}, {}, {}, /*training=*/true, 0.1, 1e-5, false));
  }
  x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  return torch::cross_entropy_loss(torch::linear(x, net.fc).to(torch::kFloat), labels);
}

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
}

}  // namespace

PrecisionTiming measure_precisions(torch::Device device) {
  const ComputeOptions saved = compute_options();
  at::Generator gen = at::detail::createCPUGenerator(12345);
  const BenchNet net = make_bench_net(gen, device);
  const torch::Tensor images = to_memory_format(torch::rand({64, 3, 32, 32}, gen).to(device));
  const torch::Tensor labels = torch::randint(0, 10, {64}, gen, torch::kLong).to(device);

  auto step = [&](Precision precision, double* loss_value) {
    ComputeOptions options = saved;
    options.precision = precision;
    set_compute_options(options);
    synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    torch::Tensor loss;
    {
      AutocastScope autocast(device);
      loss = bench_loss(net, images, labels);
    }
    loss.backward();
    synchronize(device);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (loss_value) *loss_value = loss.item<double>();
    for (auto& t : net.conv) t.mutable_grad() = torch::Tensor();
    net.fc.mutable_grad() = torch::Tensor();
    return ms;
  };

  PrecisionTiming timing;
  double fp32_loss = 0, bf16_loss = 0;
  step(Precision::kFp32, &fp32_loss);  // warm-up: kernels chosen, caches filled
  step(Precision::kBf16, &bf16_loss);
  timing.fp32_ms = timing.bf16_ms = 1e30;
  // Alternating, so that a busy moment of the machine hurts both alike; the fastest try counts.
  for (int i = 0; i < 5; ++i) {
    timing.fp32_ms = std::min(timing.fp32_ms, step(Precision::kFp32, nullptr));
    timing.bf16_ms = std::min(timing.bf16_ms, step(Precision::kBf16, nullptr));
  }
  timing.loss_difference = std::abs(bf16_loss - fp32_loss) / std::max(1e-12, std::abs(fp32_loss));
  set_compute_options(saved);
  return timing;
}

std::string machine_key(torch::Device device) {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) model = line.substr(colon + 2);
    break;
  }
  std::ostringstream key;
  if (device.is_cuda()) {
    key << "cuda:" << (device.index() < 0 ? 0 : device.index()) << " on ";
  }
  key << model << " | " << at::get_num_threads() << " threads | LibTorch " << TORCH_VERSION;
  return key.str();
}

fs::path precision_cache_file() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    return fs::path(xdg) / "nad" / "precision.json";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return fs::path(home) / ".cache" / "nad" / "precision.json";
  }
  return {};
}

namespace {
nlohmann::json read_cache(const fs::path& cache) {
  std::ifstream in(cache);
  if (!in) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : nlohmann::json::object();
}
}  // namespace

std::optional<PrecisionTiming> cached_timing(const fs::path& cache, const std::string& machine) {
  if (cache.empty()) return std::nullopt;
  const nlohmann::json all = read_cache(cache);
  const auto it = all.find(machine);
  if (it == all.end() || !it->is_object()) return std::nullopt;
  const nlohmann::json& entry = *it;
  for (const char* field : {"fp32_step_ms", "bf16_step_ms", "bf16_loss_difference"}) {
    if (!entry.contains(field) || !entry[field].is_number()) return std::nullopt;
  }
  PrecisionTiming timing;
  timing.fp32_ms = entry["fp32_step_ms"].get<double>();
  timing.bf16_ms = entry["bf16_step_ms"].get<double>();
  timing.loss_difference = entry["bf16_loss_difference"].get<double>();
  return timing;
}

void cache_timing(const fs::path& cache, const std::string& machine,
                  const PrecisionTiming& timing) {
  if (cache.empty()) return;
  try {
    nlohmann::json all = read_cache(cache);
    all[machine] = {{"fp32_step_ms", timing.fp32_ms},
                    {"bf16_step_ms", timing.bf16_ms},
                    {"bf16_loss_difference", timing.loss_difference}};
    std::error_code ec;
    fs::create_directories(cache.parent_path(), ec);
    write_text_atomic(cache, all.dump(2) + "\n");
  } catch (const std::exception&) {
    // A read-only home: measure again next time.
  }
}

PrecisionChoice choose_precision(torch::Device device) {
  const std::string machine = machine_key(device);
  // Commands that open several runs (demo, table) measure once, even without a writable cache.
  static std::map<std::string, PrecisionChoice> chosen;
  if (auto it = chosen.find(machine); it != chosen.end()) {
    PrecisionChoice again = it->second;
    again.from_cache = true;
    return again;
  }
  if (device.is_cpu() && !cpu_has_native_bf16()) {
    PrecisionChoice choice;
    choice.reason = "this CPU has no native bf16 arithmetic (AVX512-BF16 or AMX)";
    choice.machine = machine;
    return choice;
  }
  const fs::path cache = precision_cache_file();
  std::optional<PrecisionTiming> timing = cached_timing(cache, machine);
  const bool from_cache = timing.has_value();
  if (!timing) {
    timing = measure_precisions(device);
    cache_timing(cache, machine, *timing);
  }
  PrecisionChoice choice = decide_precision(*timing);
  choice.from_cache = from_cache;
  choice.machine = machine;
  chosen[machine] = choice;
  return choice;
}

}  // namespace nad
