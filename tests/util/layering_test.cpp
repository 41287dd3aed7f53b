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

namespace {

namespace fs = std::filesystem;

// docs/architecture.md's table, as code. nullptr: may include everything in src/nad/.
const std::map<std::string, std::set<std::string>>& allowed() {
  static const std::map<std::string, std::set<std::string>> table = {
      {"util", {}},
      {"dist", {"util"}},
      {"data", {"util"}},
      {"models", {"util", "dist"}},
      {"attacks", {"util", "data", "models"}},
      {"io", {"util"}},
      {"train", {"util", "dist", "data", "models", "io"}},
      {"defenses", {"util", "dist", "data", "models", "io", "train"}},
  };
  return table;
}

// io's files above the format files, and what each may include besides util.
const std::map<std::string, std::set<std::string>> kIoRunArtefacts = {
    {"checkpoint", {"models"}}, {"report", {"train"}}, {"sample_grid", {"data", "attacks"}}};
// The only io files train may include: the format files (its state is a torch file).
const std::set<std::string> kIoFormats = {"pickle", "zip_archive",         "torch_file", "npy",
                                          "png",    "torchscript_archive", "figure"};

TEST(Layering, IncludesPointDownTheLayerOrder) {
  const fs::path root = fs::path(NAD_SCRIPTS_DIR).parent_path() / "src" / "nad";
  ASSERT_TRUE(fs::is_directory(root)) << root;
  const std::regex include(R"(^\s*#include\s+"nad/(\w+)/(\w+)\.h")");
  std::string wrong;
  int files = 0;
  for (const auto& folder : fs::directory_iterator(root)) {
    const std::string layer = folder.path().filename().string();
    if (!folder.is_directory() || layer == "pipeline") continue;
    const auto rule = allowed().find(layer);
    if (rule == allowed().end()) {
      wrong += layer + "/ is not in the layer table\n";
      continue;
    }
    for (const auto& file : fs::directory_iterator(folder.path())) {
      const std::string stem = file.path().stem().string();
      std::ifstream in(file.path());
      std::string line;
      ++files;
      while (std::getline(in, line)) {
        std::smatch m;
        if (!std::regex_search(line, m, include)) continue;
        const std::string to = m[1], header = m[2];
        if (to == layer) continue;
        bool ok = rule->second.count(to) > 0;
        if (layer == "io" && kIoRunArtefacts.count(stem))
          ok = ok || kIoRunArtefacts.at(stem).count(to);
        if (layer == "train" && to == "io") ok = kIoFormats.count(header) > 0;
        if (!ok)
          wrong +=
              layer + "/" + file.path().filename().string() + " -> " + to + "/" + header + ".h\n";
      }
    }
  }
  EXPECT_GT(files, 50);
  EXPECT_TRUE(wrong.empty()) << "include arrows against docs/architecture.md:\n" << wrong;
}

}  // namespace
