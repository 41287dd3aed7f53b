// Option names have one source, util/flags.h: the CLI registers its options under those
// constants and the library's messages name options through them. Checked against the binary's
// own help: every constant is an option of some subcommand, and no string of the library spells
// one of them by hand (the names built from a prefix, such as --scan-lr, must at least exist).
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "support/cli.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

fs::path repo_root() { return fs::path(NAD_SCRIPTS_DIR).parent_path(); }

std::string read_file(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The names util/flags.h defines, "--model" ...
std::set<std::string> flag_constants() {
  const std::string header = read_file(repo_root() / "src" / "nad" / "util" / "flags.h");
  const std::regex constant(R"re(inline const std::string \w+ = "(--[a-z0-9-]*[a-z0-9])";)re");
  std::set<std::string> names;
  for (auto it = std::sregex_iterator(header.begin(), header.end(), constant);
       it != std::sregex_iterator(); ++it)
    names.insert((*it)[1]);
  return names;
}

// The contents of the C++ string literals of `code` (comments, character literals and raw
// strings skipped), each with its line.
std::vector<std::pair<std::string, int>> string_literals(const std::string& code) {
  std::vector<std::pair<std::string, int>> literals;
  int line = 1;
  for (size_t i = 0; i < code.size(); ++i) {
    const char c = code[i];
    if (c == '\n') {
      ++line;
    } else if (code.compare(i, 2, "//") == 0) {
      i = code.find('\n', i) - 1;
    } else if (code.compare(i, 2, "/*") == 0) {
      const size_t end = code.find("*/", i);
      for (size_t j = i; j < end; ++j) line += code[j] == '\n';
      i = end + 1;
    } else if (code.compare(i, 2, "R\"") == 0 && (i == 0 || !std::isalnum(code[i - 1]))) {
      // R"delimiter( ... )delimiter"
      const size_t open = code.find('(', i);
      const std::string close = ")" + code.substr(i + 2, open - i - 2) + "\"";
      const size_t end = code.find(close, open);
      for (size_t j = i; j < end; ++j) line += code[j] == '\n';
      i = end + close.size() - 1;
    } else if (c == '\'' || c == '"') {
      std::string text;
      size_t j = i + 1;
      for (; code[j] != c; ++j) {
        if (code[j] == '\\') text += code[j++];
        text += code[j];
      }
      if (c == '"') literals.push_back({text, line});
      i = j;
    }
  }
  return literals;
}

// Each option a literal of `code` names: by hand, though util/flags.h has it ("file:line: --x
// spelt by hand"), or not at all an option of the binary ("file:line: --x is no option").
std::string misnamed_options(const std::string& code, const std::string& file,
                             const std::set<std::string>& constants,
                             const std::set<std::string>& options) {
  const std::regex name(R"((^|[^a-zA-Z0-9_-])(--[a-z][a-z0-9-]*[a-z0-9])(?![a-z0-9-]))");
  std::string wrong;
  for (const auto& [text, line] : string_literals(code)) {
    for (auto it = std::sregex_iterator(text.begin(), text.end(), name);
         it != std::sregex_iterator(); ++it) {
      const std::string option = (*it)[2];
      const std::string where = file + ":" + std::to_string(line) + ": " + option;
      if (constants.count(option)) {
        wrong += where + " spelt by hand\n";
      } else if (!options.count(option)) {
        wrong += where + " is no option\n";
      }
    }
  }
  return wrong;
}

std::set<std::string> every_help_option() {
  std::set<std::string> options;
  for (const std::string& command : nad_subcommands()) {
    const std::set<std::string> own = nad_help_options(command);
    options.insert(own.begin(), own.end());
  }
  return options;
}

TEST(FlagsCli, EveryConstantIsAnOptionOfACommand) {
  const std::set<std::string> constants = flag_constants();
  ASSERT_GT(constants.size(), 100u);
  const std::set<std::string> options = every_help_option();
  for (const std::string& name : constants)
    EXPECT_TRUE(options.count(name)) << "util/flags.h names " << name << ", which no --help lists";
}

TEST(FlagsCli, TheLibrarySpellsNoOptionByHand) {
  const std::set<std::string> constants = flag_constants();
  const std::set<std::string> options = every_help_option();
  const fs::path root = repo_root() / "src" / "nad";
  std::string wrong;
  int files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const fs::path& file = entry.path();
    if (file.extension() != ".cpp" && file.extension() != ".h") continue;
    if (file.filename() == "flags.h") continue;
    ++files;
    wrong +=
        misnamed_options(read_file(file), fs::relative(file, root).string(), constants, options);
  }
  EXPECT_GT(files, 100);
  EXPECT_TRUE(wrong.empty()) << "option names in the library's strings:\n" << wrong;
}

// The check itself: a name spelt by hand and a name that is no option are found; comments,
// character literals, names from a prefix and mere dashes are not.
TEST(FlagsCli, CheckFindsAHandSpeltName) {
  const std::string code =
      "// \"--model\" in a comment\n"
      "throw UserError(flag::model + \" is required\");\n"
      "throw UserError(\"--lr must be > 0\");\n"
      "char dash = '-'; /* \"--out\" */ log(\"see --scan-lr and --no-such-option; a -- b\");\n";
  const std::string wrong = misnamed_options(code, "a.cpp", {"--model", "--lr", "--out"},
                                             {"--model", "--lr", "--out", "--scan-lr"});
  EXPECT_EQ(wrong, "a.cpp:3: --lr spelt by hand\na.cpp:4: --no-such-option is no option\n");
}

}  // namespace
}  // namespace nad::test
