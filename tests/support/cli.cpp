#include "support/cli.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "nad/data/readers.h"
#include "nad/io/png.h"

namespace nad::test {

CommandResult run_shell(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

CommandResult run_nad(const std::string& arguments) {
  return run_shell(std::string(NAD_BINARY) + " " + arguments);
}

void expect_eval_gives_after(const std::string& options, const std::filesystem::path& run,
                             const std::filesystem::path& out) {
  CommandResult eval = run_nad("eval" + options + " --model " + (run / "model.pt").string() +
                               " --out " + out.string());
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_DOUBLE_EQ(read_json(out / "summary.json")["asr"].get<double>(),
                   read_json(run / "summary.json")["after"]["asr"].get<double>());
}

std::vector<std::string> nad_subcommands() {
  const CommandResult help = run_nad("--help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  std::vector<std::string> names;
  std::istringstream lines(help.output.substr(help.output.find("Subcommands:")));
  std::string line;
  const std::regex entry(R"(^  ([a-z][a-z-]*)\s)");
  while (std::getline(lines, line)) {
    std::smatch m;
    if (std::regex_search(line, m, entry)) names.push_back(m[1]);
  }
  return names;
}

std::set<std::string> nad_help_options(const std::string& command) {
  const CommandResult help = run_nad(command + " --help");
  EXPECT_EQ(help.exit_code, 0) << command << ": " << help.output;
  std::set<std::string> options;
  const std::regex option(R"(--[a-z0-9][a-z0-9-]*)");
  for (auto it = std::sregex_iterator(help.output.begin(), help.output.end(), option);
       it != std::sregex_iterator(); ++it)
    options.insert(it->str());
  return options;
}

namespace {
void write_be32(std::ofstream& out, uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24),
                              static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  out.write(reinterpret_cast<const char*>(b), 4);
}

void write_split(const std::filesystem::path& dir, const std::string& prefix, int64_t count,
                 int64_t size, int64_t classes, at::Generator& gen) {
  torch::Tensor labels = torch::arange(count, torch::kLong).remainder(classes);
  torch::Tensor images = torch::randint(0, 60, {count, size, size}, gen, torch::kLong);
  auto img = images.accessor<int64_t, 3>();
  auto random = [&](int64_t low, int64_t high) {
    return torch::randint(low, high, {1}, gen).item<int64_t>();
  };
  for (int64_t i = 0; i < count; ++i) {
    const int64_t k = labels[i].item<int64_t>();
    const int64_t v = random(150, 256);
    // Shapes that survive random crops: horizontal bar, vertical bar, diagonal, hollow box.
    const int64_t p = random(2, size - 4);
    switch (k % 4) {
      case 0:
        for (int64_t a = 0; a < size; ++a) img[i][p][a] = img[i][p + 1][a] = v;
        break;
      case 1:
        for (int64_t a = 0; a < size; ++a) img[i][a][p] = img[i][a][p + 1] = v;
        break;
      case 2:
        for (int64_t a = 0; a + 1 < size; ++a) img[i][a][a] = img[i][a + 1][a] = v;
        break;
      default: {
        const int64_t side = size / 2, y = random(0, size - side), x = random(0, size - side);
        for (int64_t a = 0; a < side; ++a) {
          img[i][y][x + a] = img[i][y + side - 1][x + a] = v;
          img[i][y + a][x] = img[i][y + a][x + side - 1] = v;
        }
      }
    }
  }
  std::ofstream im(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  write_be32(im, 2051);
  write_be32(im, static_cast<uint32_t>(count));
  write_be32(im, static_cast<uint32_t>(size));
  write_be32(im, static_cast<uint32_t>(size));
  torch::Tensor bytes = images.to(torch::kUInt8).contiguous();
  im.write(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
  std::ofstream lb(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  write_be32(lb, 2049);
  write_be32(lb, static_cast<uint32_t>(count));
  torch::Tensor label_bytes = labels.to(torch::kUInt8).contiguous();
  lb.write(reinterpret_cast<const char*>(label_bytes.data_ptr<uint8_t>()), label_bytes.numel());
}
}  // namespace

void write_synthetic_idx(const std::filesystem::path& dir, int64_t train_count, int64_t test_count,
                         int64_t size, int64_t classes, uint64_t seed) {
  std::filesystem::create_directories(dir);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  write_split(dir, "train", train_count, size, classes, gen);
  write_split(dir, "t10k", test_count, size, classes, gen);
}

void write_synthetic_folder(const std::filesystem::path& dir, int64_t train_count,
                            int64_t test_count, int64_t size, int64_t classes, uint64_t seed) {
  const std::filesystem::path idx = dir / "idx";
  write_synthetic_idx(idx, train_count, test_count, size, classes, seed);
  for (const auto& [split, prefix] :
       {std::pair<std::string, std::string>{"train", "train"}, {"test", "t10k"}}) {
    const data::Dataset set = data::read_idx(idx / (prefix + "-images-idx3-ubyte"),
                                             idx / (prefix + "-labels-idx1-ubyte"));
    for (int64_t i = 0; i < set.size(); ++i) {
      const std::filesystem::path folder =
          dir / split / std::to_string(set.labels[i].item<int64_t>());
      std::filesystem::create_directories(folder);
      io::write_png(folder / (std::to_string(i) + ".png"), set.images[i]);
    }
  }
  std::filesystem::remove_all(idx);
}

nlohmann::json read_json(const std::filesystem::path& file) {
  std::ifstream in(file);
  EXPECT_TRUE(in.good()) << file;
  return nlohmann::json::parse(in);
}

std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int count_lines(const std::filesystem::path& file) {
  std::ifstream in(file);
  int lines = 0;
  std::string line;
  while (std::getline(in, line)) ++lines;
  return lines;
}

}  // namespace nad::test

namespace nad::test {

int start_nad(const std::string& arguments, const std::filesystem::path& log) {
  const std::string command =
      "exec " + std::string(NAD_BINARY) + " " + arguments + " >" + log.string() + " 2>&1";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

int wait_nad(int pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

bool wait_for_file(const std::filesystem::path& file, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (std::filesystem::exists(file)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::filesystem::exists(file);
}

}  // namespace nad::test
