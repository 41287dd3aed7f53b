// The include arrows of src/nad/ point down the layer order of docs/architecture.md ("The
// layers"): a folder includes only the folders listed for it there. Fails naming each arrow that
// points elsewhere.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;

// docs/architecture.md's table, as code. nullptr: may include everything in src/nad/.
const std::map<std::string, std::set<std::string>>& allowed() {
  static const std::map<std::string, std::set<std::string>> table = {
      {"util", {}},
      {"dist", {"util"}},
      {"io", {"util"}},
      {"data", {"util"}},
      {"models", {"util", "dist", "io"}},
      {"attacks", {"util", "io", "data", "models"}},
      {"train", {"util", "dist", "io", "data", "models"}},
      {"defenses", {"util", "dist", "io", "data", "models", "train"}},
  };
  return table;
}

// Each arrow of the folders under `root` (src/nad/'s layout) that the table does not allow, one
// "from -> to" line each; `files` counts the files read.
std::string wrong_arrows(const fs::path& root, int& files) {
  const std::regex include(R"(^\s*#include\s+"nad/(\w+)/(\w+)\.h")");
  std::string wrong;
  files = 0;
  for (const auto& folder : fs::directory_iterator(root)) {
    const std::string layer = folder.path().filename().string();
    if (!folder.is_directory() || layer == "pipeline") continue;
    const auto rule = allowed().find(layer);
    if (rule == allowed().end()) {
      wrong += layer + "/ is not in the layer table\n";
      continue;
    }
    for (const auto& file : fs::directory_iterator(folder.path())) {
      std::ifstream in(file.path());
      std::string line;
      ++files;
      while (std::getline(in, line)) {
        std::smatch m;
        if (!std::regex_search(line, m, include)) continue;
        const std::string to = m[1], header = m[2];
        if (to == layer) continue;
        if (!rule->second.count(to))
          wrong +=
              layer + "/" + file.path().filename().string() + " -> " + to + "/" + header + ".h\n";
      }
    }
  }
  return wrong;
}

TEST(Layering, IncludesPointDownTheLayerOrder) {
  const fs::path root = fs::path(NAD_SCRIPTS_DIR).parent_path() / "src" / "nad";
  ASSERT_TRUE(fs::is_directory(root)) << root;
  int files = 0;
  const std::string wrong = wrong_arrows(root, files);
  EXPECT_GT(files, 50);
  EXPECT_TRUE(wrong.empty()) << "include arrows against docs/architecture.md:\n" << wrong;
}

// The check itself: a copy of the tree's folders with one upward arrow added (io's JSON writer
// including the trainer, the loop this table once had) names exactly that arrow.
TEST(Layering, NamesAnUpwardInclude) {
  const fs::path root = fs::path(NAD_SCRIPTS_DIR).parent_path() / "src" / "nad";
  const fs::path copy = fs::temp_directory_path() / ("nad_layering_" + std::to_string(::getpid()));
  fs::remove_all(copy);
  fs::copy(root, copy, fs::copy_options::recursive);
  {
    std::ofstream upward(copy / "io" / "json.h", std::ios::app);
    upward << "#include \"nad/train/trainer.h\"\n";
  }
  int files = 0;
  const std::string wrong = wrong_arrows(copy, files);
  fs::remove_all(copy);
  EXPECT_EQ(wrong, "io/json.h -> train/trainer.h\n");
}

}  // namespace
