// The docs against the binary's own help, which is the authoritative option list: every
// subcommand has a row in docs/usage.md's command table, and every `nad <command> --option`
// written in README.md or docs/*.md is an option that `nad <command> --help` lists.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

fs::path repo_root() { return fs::path(NAD_SCRIPTS_DIR).parent_path(); }

// The code of a Markdown file: each fenced block's lines (a line ending in a backslash joined
// with the next) and each inline `span`, with the file and line they start on.
struct Code {
  std::string text;
  std::string where;
};
std::vector<Code> code_of(const fs::path& file) {
  std::ifstream in(file);
  std::vector<Code> code;
  std::string line, pending;
  bool fenced = false;
  int number = 0, pending_line = 0;
  const std::string name = fs::relative(file, repo_root()).string();
  while (std::getline(in, line)) {
    ++number;
    if (line.rfind("```", 0) == 0) {
      fenced = !fenced;
      continue;
    }
    if (fenced) {
      if (pending.empty()) pending_line = number;
      if (!line.empty() && line.back() == '\\') {
        pending += line.substr(0, line.size() - 1) + " ";
        continue;
      }
      code.push_back({pending + line, name + ":" + std::to_string(pending_line)});
      pending.clear();
      continue;
    }
    for (size_t open = line.find('`'); open != std::string::npos;) {
      const size_t close = line.find('`', open + 1);
      if (close == std::string::npos) break;
      code.push_back(
          {line.substr(open + 1, close - open - 1), name + ":" + std::to_string(number)});
      open = line.find('`', close + 1);
    }
  }
  return code;
}

std::vector<fs::path> docs() {
  std::vector<fs::path> files{repo_root() / "README.md"};
  for (const auto& entry : fs::directory_iterator(repo_root() / "docs")) {
    if (entry.path().extension() == ".md") files.push_back(entry.path());
  }
  return files;
}

// Each option written after `nad <command>` (up to the next `nad <command>`) that the command's
// help does not list: "file:line: nad command --option".
std::string unknown_options(const std::vector<Code>& code, const std::set<std::string>& commands,
                            std::map<std::string, std::set<std::string>>& help) {
  const std::regex token(R"((?:^|[\s/(`])nad ([a-z][a-z-]*)|(--[a-z0-9][a-z0-9-]*))");
  std::string wrong;
  for (const Code& c : code) {
    std::string command;
    for (auto it = std::sregex_iterator(c.text.begin(), c.text.end(), token);
         it != std::sregex_iterator(); ++it) {
      const std::smatch& m = *it;
      if (m[1].matched) {
        command = commands.count(m[1]) ? m[1].str() : "";
        continue;
      }
      if (command.empty()) continue;
      if (!help.count(command)) help[command] = nad_help_options(command);
      if (!help[command].count(m[2]))
        wrong += c.where + ": nad " + command + " " + m[2].str() + "\n";
    }
  }
  return wrong;
}

TEST(DocsCli, UsageTableListsEverySubcommand) {
  const std::vector<std::string> names = nad_subcommands();
  ASSERT_GT(names.size(), 15u);
  std::set<std::string> rows;
  std::ifstream in(repo_root() / "docs" / "usage.md");
  std::string line;
  const std::regex row(R"(^\| `([a-z][a-z-]*)` \|)");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, row)) rows.insert(m[1]);
  }
  for (const std::string& name : names) EXPECT_TRUE(rows.count(name)) << "no row for " << name;
  for (const std::string& name : rows) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end())
        << "docs/usage.md has a row for " << name << ", which is not a subcommand";
  }
}

TEST(DocsCli, EveryOptionTheDocsWriteIsInTheHelp) {
  const std::vector<std::string> names = nad_subcommands();
  const std::set<std::string> commands(names.begin(), names.end());
  std::map<std::string, std::set<std::string>> help;
  std::string wrong;
  size_t spans = 0;
  for (const fs::path& file : docs()) {
    const std::vector<Code> code = code_of(file);
    spans += code.size();
    wrong += unknown_options(code, commands, help);
  }
  EXPECT_GT(spans, 500u);
  EXPECT_GT(help.size(), 10u);  // the docs show most commands with options
  EXPECT_TRUE(wrong.empty()) << "options the docs name that --help does not list:\n" << wrong;
}

// The check itself finds a misspelt option, and follows `nad launch ... -- nad train`.
TEST(DocsCli, CheckNamesAWrongOption) {
  const std::set<std::string> commands{"train", "launch", "erase"};
  std::map<std::string, std::set<std::string>> help;
  const std::string wrong =
      unknown_options({{"nad erase --teacher T --betas 1", "a.md:1"},
                       {"nad launch --nproc 2 -- nad train --epochs 3 --lr-typo 2", "a.md:2"},
                       {"nad_bench --workload eval; other --flag", "a.md:3"}},
                      commands, help);
  EXPECT_EQ(wrong, "a.md:1: nad erase --betas\na.md:2: nad train --lr-typo\n");
}

}  // namespace
}  // namespace nad::test
