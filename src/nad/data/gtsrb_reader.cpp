#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nad/data/parallel_decode.h"
#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 32;

std::string trim(const std::string& text) {
  size_t begin = 0, end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return text.substr(begin, end - begin);
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t next = line.find(sep, start);
    fields.push_back(trim(line.substr(start, next - start)));
    if (next == std::string::npos) return fields;
    start = next + 1;
  }
}

bool all_digits(const std::string& text) {
  return !text.empty() && text.size() <= 9 &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

// An optional numeric column: its index, or -1.
struct NumberColumn {
  const char* name;
  int index = -1;
};

}  // namespace

std::vector<GtsrbAnnotation> read_gtsrb_annotations(const fs::path& file) {
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  const std::string text(bytes.begin(), bytes.end());
  std::vector<GtsrbAnnotation> rows;
  int filename_col = -1, class_col = -1;
  // Width, Height, Roi.X1, Roi.Y1, Roi.X2, Roi.Y2: checked when the header names them.
  NumberColumn numbers[] = {{"Width"}, {"Height"}, {"Roi.X1"}, {"Roi.Y1"}, {"Roi.X2"}, {"Roi.Y2"}};
  size_t line_number = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = trim(text.substr(start, end - start));
    start = end + 1;
    ++line_number;
    if (line.empty()) continue;
    const std::vector<std::string> fields = split(line, ';');
    if (filename_col < 0) {
      for (size_t i = 0; i < fields.size(); ++i) {
        if (fields[i] == "Filename") filename_col = static_cast<int>(i);
        if (fields[i] == "ClassId") class_col = static_cast<int>(i);
        for (NumberColumn& column : numbers) {
          if (fields[i] == column.name) column.index = static_cast<int>(i);
        }
      }
      if (filename_col < 0 || class_col < 0) {
        throw UserError("'" + file.string() + "' line " + std::to_string(line_number) +
                        ": the header row must name the columns 'Filename' and 'ClassId' "
                        "(semicolon separated), missing '" +
                        (filename_col < 0 ? "Filename" : "ClassId") + "'");
      }
      continue;
    }
    size_t needed = static_cast<size_t>(std::max(filename_col, class_col)) + 1;
    for (const NumberColumn& column : numbers) {
      needed = std::max(needed, static_cast<size_t>(column.index + 1));
    }
    const std::string where = "'" + file.string() + "' line " + std::to_string(line_number);
    if (fields.size() < needed) {
      throw UserError(where + " has " + std::to_string(fields.size()) +
                      " columns but the header names " + std::to_string(needed));
    }
    if (!all_digits(fields[class_col])) {
      throw UserError(where + ": bad ClassId '" + fields[class_col] + "'");
    }
    const int64_t class_id = std::stoll(fields[class_col]);
    if (class_id >= kMaxClasses) {
      throw UserError(where + ": ClassId " + fields[class_col] + " is over the limit of " +
                      std::to_string(kMaxClasses - 1));
    }
    const std::string& name = fields[filename_col];
    if (name.empty()) throw UserError(where + " has an empty Filename");
    if (name == "." || name == ".." || name.find_first_of("/\\") != std::string::npos) {
      throw UserError(where + ": Filename '" + name + "' must be a plain file name beside the CSV");
    }
    int64_t value[6] = {0, 0, 0, 0, 0, 0};
    for (size_t k = 0; k < 6; ++k) {
      const NumberColumn& column = numbers[k];
      if (column.index < 0) continue;
      const std::string& field = fields[static_cast<size_t>(column.index)];
      if (!all_digits(field)) {
        throw UserError(where + ": bad " + column.name + " '" + field + "'");
      }
      value[k] = std::stoll(field);
    }
    const bool have_size = numbers[0].index >= 0 && numbers[1].index >= 0;
    if (have_size) {
      for (size_t k = 0; k < 2; ++k) {
        if (value[k] < 1 || value[k] > kMaxImageSide) {
          throw UserError(where + ": " + numbers[k].name + " " + std::to_string(value[k]) +
                          " is outside 1 to " + std::to_string(kMaxImageSide));
        }
      }
    }
    // The ROI box [X1, X2] x [Y1, Y2] must be ordered and, with a size, inside the image.
    for (size_t axis = 0; axis < 2; ++axis) {
      const NumberColumn& low = numbers[2 + axis];
      const NumberColumn& high = numbers[4 + axis];
      if (low.index < 0 || high.index < 0) continue;
      if (value[2 + axis] > value[4 + axis]) {
        throw UserError(where + ": ROI " + low.name + " " + std::to_string(value[2 + axis]) +
                        " is past " + high.name + " " + std::to_string(value[4 + axis]));
      }
      if (have_size && value[4 + axis] > value[axis]) {
        throw UserError(where + ": ROI " + high.name + " " + std::to_string(value[4 + axis]) +
                        " is outside the image (" + numbers[axis].name + " " +
                        std::to_string(value[axis]) + ")");
      }
    }
    rows.push_back({name, class_id, line_number});
  }
  if (filename_col < 0) throw UserError("'" + file.string() + "' is empty (no header row)");
  return rows;
}

namespace {

bool is_ppm(const fs::path& file) {
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".ppm";
}

// Decodes and resizes every file into one preallocated N x 32 x 32 x 3 tensor.
torch::Tensor decode_all(const std::vector<fs::path>& files) {
  const int64_t count = static_cast<int64_t>(files.size());
  torch::Tensor images = torch::empty({count, kSide, kSide, 3}, torch::kUInt8);
  uint8_t* out = images.data_ptr<uint8_t>();
  parallel_decode(count, [&](int64_t i) {
    const torch::Tensor image = resize_image(read_ppm(files[i]), kSide, kSide).contiguous();
    std::memcpy(out + i * kSide * kSide * 3, image.data_ptr<uint8_t>(), kSide * kSide * 3);
  });
  return images;
}

Dataset make_split(const std::vector<fs::path>& files, const std::vector<int64_t>& labels) {
  Dataset split;
  split.images = decode_all(files);
  split.labels = torch::tensor(labels, torch::kInt64);
  return split;
}

}  // namespace

DatasetPair read_gtsrb(const fs::path& dir) {
  const fs::path train_root = dir / "Final_Training" / "Images";
  const fs::path test_root = dir / "Final_Test" / "Images";
  if (!fs::is_directory(train_root) || !fs::is_directory(test_root)) {
    throw UserError("'" + dir.string() +
                    "' does not have the GTSRB layout: expected Final_Training/Images/000NN/ "
                    "and Final_Test/Images/ with GT-final_test.csv (missing '" +
                    (fs::is_directory(train_root) ? test_root : train_root).string() + "')");
  }

  DatasetPair pair;
  pair.name = "gtsrb";
  // Mirrored signs can change meaning (keep left vs keep right).
  pair.natural_hflip = false;
  for (const fs::directory_entry& entry : fs::directory_iterator(train_root)) {
    if (!entry.is_directory()) continue;
    const std::string name = entry.path().filename().string();
    if (!all_digits(name)) {
      throw UserError("'" + entry.path().string() +
                      "': GTSRB class folders must be numbered like 00000");
    }
    pair.class_names.push_back(name);
  }
  if (pair.class_names.empty())
    throw UserError("'" + train_root.string() + "' has no class folders");
  if (static_cast<int64_t>(pair.class_names.size()) > kMaxClasses) {
    throw UserError("'" + train_root.string() + "' has " + std::to_string(pair.class_names.size()) +
                    " class folders, over the limit of " + std::to_string(kMaxClasses));
  }
  std::sort(pair.class_names.begin(), pair.class_names.end());
  std::map<int64_t, int64_t> label_of_class_id;
  for (size_t k = 0; k < pair.class_names.size(); ++k) {
    label_of_class_id[std::stoll(pair.class_names[k])] = static_cast<int64_t>(k);
  }

  std::vector<fs::path> train_files;
  std::vector<int64_t> train_labels;
  for (size_t k = 0; k < pair.class_names.size(); ++k) {
    const fs::path folder = train_root / pair.class_names[k];
    const fs::path csv = folder / ("GT-" + pair.class_names[k] + ".csv");
    if (!fs::is_regular_file(csv))
      throw UserError("missing GTSRB annotation file '" + csv.string() + "'");
    const std::vector<GtsrbAnnotation> rows = read_gtsrb_annotations(csv);
    if (rows.empty()) throw UserError("'" + csv.string() + "' lists no images");
    for (const GtsrbAnnotation& row : rows) {
      if (row.class_id != std::stoll(pair.class_names[k])) {
        throw UserError("'" + csv.string() + "' line " + std::to_string(row.line) +
                        " has ClassId " + std::to_string(row.class_id) + " inside folder " +
                        pair.class_names[k]);
      }
      train_files.push_back(folder / row.filename);
      train_labels.push_back(static_cast<int64_t>(k));
    }
  }

  // The ground truth ships separately from the test images, so users unpack it beside or
  // inside the Images folder.
  fs::path test_csv = dir / "Final_Test" / "GT-final_test.csv";
  if (!fs::is_regular_file(test_csv)) test_csv = test_root / "GT-final_test.csv";
  if (!fs::is_regular_file(test_csv)) {
    throw UserError(
        "missing GTSRB test labels: put GT-final_test.csv (from GTSRB_Final_Test_GT.zip) "
        "in '" +
        (dir / "Final_Test").string() + "' or '" + test_root.string() + "'");
  }
  std::map<std::string, int64_t> test_label_of_file;
  for (const GtsrbAnnotation& row : read_gtsrb_annotations(test_csv)) {
    const auto label = label_of_class_id.find(row.class_id);
    if (label == label_of_class_id.end()) {
      throw UserError("'" + test_csv.string() + "' line " + std::to_string(row.line) +
                      " has ClassId " + std::to_string(row.class_id) +
                      " which has no training folder");
    }
    test_label_of_file[row.filename] = label->second;
  }
  std::vector<fs::path> test_files;
  for (const fs::directory_entry& entry : fs::directory_iterator(test_root)) {
    if (entry.is_regular_file() && is_ppm(entry.path())) test_files.push_back(entry.path());
  }
  std::sort(test_files.begin(), test_files.end());
  if (test_files.empty()) throw UserError("'" + test_root.string() + "' has no .ppm images");
  std::vector<int64_t> test_labels;
  for (const fs::path& file : test_files) {
    const auto label = test_label_of_file.find(file.filename().string());
    if (label == test_label_of_file.end()) {
      throw UserError("'" + file.string() + "' is not listed in '" + test_csv.string() + "'");
    }
    test_labels.push_back(label->second);
  }
  if (test_label_of_file.size() != test_files.size()) {
    for (const auto& [name, label] : test_label_of_file) {
      if (!fs::is_regular_file(test_root / name)) {
        throw UserError("'" + test_csv.string() + "' lists '" + name + "' but '" +
                        (test_root / name).string() + "' does not exist");
      }
    }
  }

  pair.train = make_split(train_files, train_labels);
  pair.test = make_split(test_files, test_labels);
  return pair;
}

}  // namespace nad::data
