#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace nad::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, stdout and stderr together into the result.
CommandResult run_shell(const std::string& command);
// Runs the nad binary built with the tests with the given arguments (shell-quoted by caller).
CommandResult run_nad(const std::string& arguments);

// `nad eval` of the model a defense wrote in `run` (with the run's data and attack `options`)
// gives the run's summary's "after" ASR; the eval's folder is `out`.
void expect_eval_gives_after(const std::string& options, const std::filesystem::path& run,
                             const std::filesystem::path& out);

// The subcommands `nad --help` lists, in its order, and every --option token of
// `nad <command> --help`: the binary's own option lists, which the docs and the library's messages
// are checked against.
std::vector<std::string> nad_subcommands();
std::set<std::string> nad_help_options(const std::string& command);

// Writes a small synthetic image-classification dataset as MNIST-style IDX files:
// `classes` classes of size x size greyscale images, each class a shape (bar, bar, diagonal, box;
// repeating) plus noise, so a small CNN learns it in a few epochs.
void write_synthetic_idx(const std::filesystem::path& dir, int64_t train_count, int64_t test_count,
                         int64_t size, int64_t classes, uint64_t seed);

// The same images as an image folder (dir/train/<class>/<i>.png, dir/test/...), so that the
// dataset has exactly `classes` classes (the MNIST reader always reports 10).
void write_synthetic_folder(const std::filesystem::path& dir, int64_t train_count,
                            int64_t test_count, int64_t size, int64_t classes, uint64_t seed);

// Files the binary wrote: parsed JSON (a missing file fails the test), whole text, line count.
nlohmann::json read_json(const std::filesystem::path& file);
std::string read_text(const std::filesystem::path& file);
int count_lines(const std::filesystem::path& file);

}  // namespace nad::test

namespace nad::test {

// Starts the nad binary in the background (output to `log`), for tests that stop it midway.
int start_nad(const std::string& arguments, const std::filesystem::path& log);
// Waits for it; returns its exit code, or 128 + the signal that ended it.
int wait_nad(int pid);
// Polls until `file` exists or `seconds` pass; returns whether it exists.
bool wait_for_file(const std::filesystem::path& file, double seconds);

}  // namespace nad::test
