#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "nad/data/parallel_decode.h"
#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 64;
constexpr int64_t kImageBytes = kSide * kSide * 3;

// Calls visit(line_number, line) for every line of `text` (numbered from 1), without its
// line break and trailing whitespace (a CR included).
template <typename Visit>
void for_each_line(const std::string& text, const Visit& visit) {
  size_t start = 0, line_number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    size_t stop = end;
    while (stop > start && std::isspace(static_cast<unsigned char>(text[stop - 1]))) --stop;
    visit(++line_number, text.substr(start, stop - start));
    start = end + 1;
  }
}

std::string read_text(const fs::path& file) {
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  return std::string(bytes.begin(), bytes.end());
}

// A name that can only mean one entry of one folder: no separators, no "." or "..", no
// control characters (a NUL would cut the path short), no leading or trailing space.
bool is_plain_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  if (std::isspace(static_cast<unsigned char>(name.front())) ||
      std::isspace(static_cast<unsigned char>(name.back()))) {
    return false;
  }
  return std::none_of(name.begin(), name.end(), [](unsigned char c) {
    return c == '/' || c == '\\' || c < 0x20 || c == 0x7f;
  });
}

bool is_box_number(const std::string& text) {
  return !text.empty() && text.size() <= 9 &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool is_image_file(const fs::path& file) {
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpeg" || ext == ".jpg" || ext == ".png";
}

struct Wnid {
  std::string name;
  size_t line = 0;  // in wnids.txt
};

std::vector<Wnid> read_wnids(const fs::path& file) {
  std::vector<Wnid> wnids;
  std::map<std::string, size_t> line_of;
  for_each_line(read_text(file), [&](size_t line, const std::string& text) {
    if (text.empty()) return;
    const std::string where = "'" + file.string() + "' line " + std::to_string(line);
    if (!is_plain_name(text) || text.find_first_of(" \t") != std::string::npos) {
      throw UserError(where + ": '" + text + "' is not a wnid (one folder name per line)");
    }
    const auto [first, inserted] = line_of.emplace(text, line);
    if (!inserted) {
      throw UserError(where + ": wnid '" + text + "' is listed twice (first on line " +
                      std::to_string(first->second) + ")");
    }
    if (static_cast<int64_t>(wnids.size()) == kMaxClasses) {
      throw UserError(where + ": more than " + std::to_string(kMaxClasses) + " classes");
    }
    wnids.push_back({text, line});
  });
  if (wnids.size() < 2) {
    throw UserError("'" + file.string() + "' lists " + std::to_string(wnids.size()) +
                    " wnids; a classifier needs at least 2 classes");
  }
  return wnids;
}

// words.txt maps every ImageNet wnid to its names ("n01443537<TAB>goldfish, Carassius
// auratus"); a wnid it does not name keeps the wnid as its class name.
std::vector<std::string> class_names(const fs::path& file, const std::vector<Wnid>& wnids) {
  std::vector<std::string> names;
  for (const Wnid& wnid : wnids) names.push_back(wnid.name);
  if (!fs::exists(file)) return names;
  std::map<std::string, size_t> index;
  for (size_t k = 0; k < wnids.size(); ++k) index.emplace(wnids[k].name, k);
  std::vector<bool> named(wnids.size(), false);
  for_each_line(read_text(file), [&](size_t line, const std::string& text) {
    if (text.empty()) return;
    const size_t tab = text.find('\t');
    if (tab == std::string::npos) {
      throw UserError("'" + file.string() + "' line " + std::to_string(line) +
                      ": expected a wnid, a tab, then its names");
    }
    const auto k = index.find(text.substr(0, tab));
    if (k == index.end() || named[k->second]) return;
    std::string words = text.substr(tab + 1);
    words.erase(0, std::min(words.find_first_not_of(" \t"), words.size()));
    if (words.empty()) return;
    names[k->second] = words;
    named[k->second] = true;
  });
  return names;
}

// Decodes every file into one N x 64 x 64 x 3 tensor; `where[i]`, when not empty, says where
// file i was listed, for the error messages.
torch::Tensor decode_all(const std::vector<fs::path>& files,
                         const std::vector<std::string>& where) {
  const int64_t count = static_cast<int64_t>(files.size());
  torch::Tensor images = torch::empty({count, kSide, kSide, 3}, torch::kUInt8);
  uint8_t* out = images.data_ptr<uint8_t>();
  parallel_decode(count, [&](int64_t i) {
    // Tiny-ImageNet holds a few greyscale JPEGs: read_image makes them RGB.
    const torch::Tensor image = read_image(files[i], 3);
    if (image.size(0) != kSide || image.size(1) != kSide) {
      throw UserError("'" + files[i].string() + "'" + where[i] + " is " +
                      std::to_string(image.size(1)) + "x" + std::to_string(image.size(0)) +
                      ", but Tiny-ImageNet images are 64x64");
    }
    std::memcpy(out + i * kImageBytes, image.data_ptr<uint8_t>(), kImageBytes);
  });
  return images;
}

}  // namespace

std::vector<TinyImagenetAnnotation> parse_tiny_imagenet_val_annotations(const std::string& text,
                                                                        const std::string& file) {
  std::vector<TinyImagenetAnnotation> rows;
  std::map<std::string, size_t> line_of;
  for_each_line(text, [&](size_t line, const std::string& row) {
    if (row.empty()) return;
    const std::string where = "'" + file + "' line " + std::to_string(line);
    std::vector<std::string> fields;
    for (size_t start = 0;;) {
      const size_t tab = row.find('\t', start);
      fields.push_back(row.substr(start, tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    if (fields.size() != 6) {
      throw UserError(where + " has " + std::to_string(fields.size()) +
                      " tab-separated fields, expected 6 (file name, wnid, x_min, y_min, x_max, "
                      "y_max)");
    }
    const std::string& name = fields[0];
    if (!is_plain_name(name)) {
      throw UserError(where + ": file name '" + name +
                      "' must be a plain file name in val/images/");
    }
    if (!is_plain_name(fields[1])) throw UserError(where + ": bad wnid '" + fields[1] + "'");
    for (size_t k = 2; k < 6; ++k) {
      if (!is_box_number(fields[k])) {
        throw UserError(where + ": bounding box value '" + fields[k] + "' (field " +
                        std::to_string(k + 1) + ") is not a whole number");
      }
    }
    const auto [first, inserted] = line_of.emplace(name, line);
    if (!inserted) {
      throw UserError(where + ": '" + name + "' is listed twice (first on line " +
                      std::to_string(first->second) + ")");
    }
    rows.push_back({name, fields[1], line});
  });
  return rows;
}

DatasetPair read_tiny_imagenet(const fs::path& dir) {
  fs::path root = dir;
  if (!fs::exists(root / "wnids.txt") && fs::is_directory(dir / "tiny-imagenet-200")) {
    root = dir / "tiny-imagenet-200";
  }
  const fs::path wnids_file = root / "wnids.txt";
  if (!fs::is_regular_file(wnids_file)) {
    throw UserError("'" + dir.string() +
                    "' is not a Tiny-ImageNet folder: expected wnids.txt, train/<wnid>/images/ "
                    "and val/images/ with val/val_annotations.txt, directly or in "
                    "tiny-imagenet-200/ (missing '" +
                    wnids_file.string() + "')");
  }
  const std::vector<Wnid> wnids = read_wnids(wnids_file);

  DatasetPair pair;
  pair.name = "tiny-imagenet";
  pair.natural_hflip = true;
  pair.class_names = class_names(root / "words.txt", wnids);

  std::vector<fs::path> train_files;
  std::vector<int64_t> train_labels;
  for (size_t k = 0; k < wnids.size(); ++k) {
    const fs::path folder = root / "train" / wnids[k].name / "images";
    if (!fs::is_directory(folder)) {
      throw UserError("missing '" + folder.string() + "' for wnid '" + wnids[k].name + "' ('" +
                      wnids_file.string() + "' line " + std::to_string(wnids[k].line) + ")");
    }
    // Sorted plain names, so that the order and any seeded experiment match on every machine.
    std::vector<std::string> names;
    for (const fs::directory_entry& entry : fs::directory_iterator(folder)) {
      if (entry.is_regular_file() && is_image_file(entry.path())) {
        names.push_back(entry.path().filename().string());
      }
    }
    if (names.empty()) {
      throw UserError("'" + folder.string() + "' has no images (.JPEG, .jpg or .png)");
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      train_files.push_back(folder / name);
      train_labels.push_back(static_cast<int64_t>(k));
    }
  }

  const fs::path annotations = root / "val" / "val_annotations.txt";
  if (!fs::is_regular_file(annotations)) {
    throw UserError("missing Tiny-ImageNet test labels '" + annotations.string() +
                    "' (the val split, with labels, is nad's test set)");
  }
  std::map<std::string, int64_t> label_of;
  for (size_t k = 0; k < wnids.size(); ++k) label_of.emplace(wnids[k].name, k);
  std::vector<fs::path> test_files;
  std::vector<std::string> test_where;
  std::vector<int64_t> test_labels;
  for (const TinyImagenetAnnotation& row :
       parse_tiny_imagenet_val_annotations(read_text(annotations), annotations.string())) {
    const std::string where = "'" + annotations.string() + "' line " + std::to_string(row.line);
    const auto label = label_of.find(row.wnid);
    if (label == label_of.end()) {
      throw UserError(where + ": wnid '" + row.wnid + "' is not in '" + wnids_file.string() + "'");
    }
    const fs::path file = root / "val" / "images" / row.filename;
    if (!fs::is_regular_file(file)) {
      throw UserError(where + " lists '" + row.filename + "' but '" + file.string() +
                      "' does not exist");
    }
    test_files.push_back(file);
    test_where.push_back(" (" + where + ")");
    test_labels.push_back(label->second);
  }
  if (test_files.empty()) throw UserError("'" + annotations.string() + "' lists no images");

  pair.train.images = decode_all(train_files, std::vector<std::string>(train_files.size()));
  pair.train.labels = torch::tensor(train_labels, torch::kInt64);
  pair.test.images = decode_all(test_files, test_where);
  pair.test.labels = torch::tensor(test_labels, torch::kInt64);
  return pair;
}

}  // namespace nad::data
