#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "nad/data/parallel_decode.h"
#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

struct Split {
  std::vector<fs::path> files;
  std::vector<int64_t> labels;
};

bool is_image_file(const fs::path& file) {
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".ppm" || ext == ".bmp";
}

// Sorted class folder names under `root`; hidden folders (.git, .ipynb_checkpoints) are not
// classes.
std::vector<std::string> class_folders(const fs::path& root) {
  if (!fs::is_directory(root)) throw UserError("missing image folder '" + root.string() + "'");
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && !name.empty() && name[0] != '.') names.push_back(name);
  }
  if (names.empty()) {
    throw UserError("'" + root.string() + "' has no class folders (expected " + root.string() +
                    "/<class>/<image>)");
  }
  if (static_cast<int64_t>(names.size()) > kMaxClasses) {
    throw UserError("'" + root.string() + "' has " + std::to_string(names.size()) +
                    " class folders, over the limit of " + std::to_string(kMaxClasses));
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Every image under root/<class>/, sorted by file name within a class so that the order and
// hence any seeded experiment is the same on every machine.
Split list_split(const fs::path& root, const std::vector<std::string>& classes) {
  Split split;
  for (size_t k = 0; k < classes.size(); ++k) {
    const fs::path folder = root / classes[k];
    // Sorting plain names: comparing fs::path objects is several times slower.
    std::vector<std::string> names;
    for (const fs::directory_entry& entry : fs::directory_iterator(folder)) {
      if (entry.is_regular_file() && is_image_file(entry.path())) {
        names.push_back(entry.path().filename().string());
      }
    }
    if (names.empty()) {
      throw UserError("class folder '" + folder.string() +
                      "' has no images (.png, .jpg, .jpeg, .ppm or .bmp)");
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      split.files.push_back(folder / name);
      split.labels.push_back(static_cast<int64_t>(k));
    }
  }
  return split;
}

struct Geometry {
  int64_t height = 0;
  int64_t width = 0;
  int channels = 3;
};

// Size and colour of the first image, read from its header only. Grey sets stay one channel;
// anything with colour (or alpha) becomes RGB.
Geometry probe(const fs::path& file) {
  const ImageInfo info = read_image_info(file);
  Geometry geometry;
  geometry.height = info.height;
  geometry.width = info.width;
  geometry.channels = info.channels;
  return geometry;
}

// Decodes every file into one preallocated N x H x W x C tensor.
torch::Tensor decode_all(const std::vector<fs::path>& files, const Geometry& geometry, bool resize,
                         const fs::path& reference) {
  const int64_t count = static_cast<int64_t>(files.size());
  const int64_t item_bytes = geometry.height * geometry.width * geometry.channels;
  torch::Tensor images;
  try {
    images =
        torch::empty({count, geometry.height, geometry.width, geometry.channels}, torch::kUInt8);
  } catch (const c10::Error&) {
    throw UserError(
        "'" + reference.parent_path().parent_path().parent_path().string() +
        "': " + std::to_string(count) + " images of " + std::to_string(geometry.width) + "x" +
        std::to_string(geometry.height) + "x" + std::to_string(geometry.channels) + " need " +
        std::to_string(count * item_bytes) +
        " bytes, more memory than this machine can give (use " + flag::image_size + ")");
  }
  uint8_t* out = images.data_ptr<uint8_t>();
  parallel_decode(count, [&](int64_t i) {
    torch::Tensor image = read_image(files[i], geometry.channels);
    if (resize) {
      image = resize_image(image, geometry.height, geometry.width);
    } else if (image.size(0) != geometry.height || image.size(1) != geometry.width) {
      throw UserError("'" + files[i].string() + "' is " + std::to_string(image.size(1)) + "x" +
                      std::to_string(image.size(0)) + " but '" + reference.string() + "' is " +
                      std::to_string(geometry.width) + "x" + std::to_string(geometry.height) +
                      "; pass " + flag::image_size + " to resize every image to one size");
    }
    std::memcpy(out + i * item_bytes, image.contiguous().data_ptr<uint8_t>(), item_bytes);
  });
  return images;
}

// Whether `name` is a plain non-negative decimal number below the class limit.
bool is_class_number(const std::string& name) {
  if (name.empty() || name.size() > 6) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); });
}

}  // namespace

LabelledFolder read_labelled_folder(const fs::path& root, int64_t num_classes, int image_size) {
  if (image_size < 0 || image_size > kMaxImageSide) {
    throw UserError(flag::image_size + " must be 1 to " + std::to_string(kMaxImageSide) +
                    " (or 0: keep), got " + std::to_string(image_size));
  }
  const std::vector<std::string> folders = class_folders(root);
  LabelledFolder out;
  std::vector<int64_t> label_of(folders.size(), -1);
  const fs::path list = root / "classes.txt";
  if (fs::exists(list)) {
    out.mapping = "classes.txt";
    const std::vector<unsigned char> bytes = read_file_bytes(list);
    std::string line;
    size_t line_number = 0;
    auto add = [&](std::string name) {
      ++line_number;
      while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
      if (name.empty()) {
        throw UserError("'" + list.string() + "' line " + std::to_string(line_number) +
                        ": empty class name");
      }
      if (std::find(out.class_names.begin(), out.class_names.end(), name) !=
          out.class_names.end()) {
        throw UserError("'" + list.string() + "' line " + std::to_string(line_number) +
                        ": class '" + name + "' is listed twice");
      }
      out.class_names.push_back(name);
    };
    for (unsigned char c : bytes) {
      if (c == '\n') {
        add(line);
        line.clear();
      } else {
        line += static_cast<char>(c);
      }
    }
    if (!line.empty()) add(line);
    if (static_cast<int64_t>(out.class_names.size()) > kMaxClasses) {
      throw UserError("'" + list.string() + "' lists more than " + std::to_string(kMaxClasses) +
                      " classes");
    }
    for (size_t f = 0; f < folders.size(); ++f) {
      const auto it = std::find(out.class_names.begin(), out.class_names.end(), folders[f]);
      if (it == out.class_names.end()) {
        throw UserError("class folder '" + (root / folders[f]).string() + "' is not listed in '" +
                        list.string() + "'");
      }
      label_of[f] = it - out.class_names.begin();
    }
  } else if (std::all_of(folders.begin(), folders.end(), is_class_number)) {
    out.mapping = "numbered folders";
    int64_t highest = 0;
    for (size_t f = 0; f < folders.size(); ++f) {
      label_of[f] = std::stoll(folders[f]);
      highest = std::max(highest, label_of[f]);
    }
    const int64_t count = num_classes > 0 ? num_classes : highest + 1;
    for (int64_t k = 0; k < count; ++k) out.class_names.push_back(std::to_string(k));
  } else {
    out.mapping = "sorted folders";
    out.class_names = folders;
    for (size_t f = 0; f < folders.size(); ++f) label_of[f] = static_cast<int64_t>(f);
    if (num_classes > 0 && static_cast<int64_t>(folders.size()) != num_classes) {
      throw UserError("'" + root.string() + "' has " + std::to_string(folders.size()) +
                      " class folders for " + std::to_string(num_classes) +
                      " classes; name the folders by class number or list the classes in order "
                      "in " +
                      list.string());
    }
  }
  if (num_classes > 0) {
    for (size_t f = 0; f < folders.size(); ++f) {
      if (label_of[f] >= num_classes) {
        throw UserError("class folder '" + (root / folders[f]).string() + "' is class " +
                        std::to_string(label_of[f]) + ", but there are only " +
                        std::to_string(num_classes) + " classes (0-" +
                        std::to_string(num_classes - 1) + ")");
      }
    }
    if (static_cast<int64_t>(out.class_names.size()) != num_classes) {
      if (static_cast<int64_t>(out.class_names.size()) > num_classes) {
        throw UserError("'" + list.string() + "' lists " + std::to_string(out.class_names.size()) +
                        " classes, but there are only " + std::to_string(num_classes));
      }
      for (int64_t k = static_cast<int64_t>(out.class_names.size()); k < num_classes; ++k) {
        out.class_names.push_back(std::to_string(k));
      }
    }
  }
  const Split split = list_split(root, folders);
  std::vector<int64_t> labels;
  for (int64_t folder_index : split.labels) labels.push_back(label_of[folder_index]);
  Geometry geometry = probe(split.files[0]);
  if (image_size > 0) geometry.height = geometry.width = image_size;
  out.data.images = decode_all(split.files, geometry, image_size > 0, split.files[0]);
  out.data.labels = torch::tensor(labels, torch::kInt64);
  out.files = split.files;
  return out;
}

namespace {
std::vector<std::string> image_file_names(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && is_image_file(entry.path())) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}
}  // namespace

bool has_image_files(const fs::path& dir) {
  return fs::is_directory(dir) && !image_file_names(dir).empty();
}

ImageFiles read_image_files(const fs::path& dir, int image_size, int channels) {
  if (!fs::is_directory(dir)) throw UserError("'" + dir.string() + "' is not a directory");
  if (image_size < 0 || image_size > kMaxImageSide) {
    throw UserError(flag::image_size + " must be 1 to " + std::to_string(kMaxImageSide) +
                    " (or 0: keep), got " + std::to_string(image_size));
  }
  ImageFiles out;
  for (const std::string& name : image_file_names(dir)) out.files.push_back(dir / name);
  if (out.files.empty()) {
    throw UserError("'" + dir.string() + "' has no images (.png, .jpg, .jpeg, .ppm or .bmp)");
  }
  Geometry geometry = probe(out.files[0]);
  if (channels > 0) geometry.channels = channels;
  if (image_size > 0) geometry.height = geometry.width = image_size;
  out.images = decode_all(out.files, geometry, image_size > 0, out.files[0]);
  return out;
}

DatasetPair read_image_folder(const fs::path& dir, int image_size, const std::string& name) {
  if (!fs::is_directory(dir)) throw UserError("'" + dir.string() + "' is not a directory");
  if (image_size < 0 || image_size > kMaxImageSide) {
    throw UserError(flag::image_size + " must be 1 to " + std::to_string(kMaxImageSide) +
                    " (or 0: keep), got " + std::to_string(image_size));
  }
  const fs::path train_root = dir / "train";
  const fs::path test_root = dir / "test";

  DatasetPair pair;
  pair.name = name;
  pair.natural_hflip = true;
  pair.class_names = class_folders(train_root);
  const std::vector<std::string> test_classes = class_folders(test_root);
  if (test_classes != pair.class_names) {
    const std::set<std::string> train_set(pair.class_names.begin(), pair.class_names.end());
    const std::set<std::string> test_set(test_classes.begin(), test_classes.end());
    std::string diff;
    for (const std::string& c : train_set) {
      if (!test_set.count(c)) diff += " '" + c + "' only in train/;";
    }
    for (const std::string& c : test_set) {
      if (!train_set.count(c)) diff += " '" + c + "' only in test/;";
    }
    diff.pop_back();
    throw UserError("'" + train_root.string() + "' and '" + test_root.string() +
                    "' must hold the same class folders:" + diff);
  }

  const Split train = list_split(train_root, pair.class_names);
  const Split test = list_split(test_root, pair.class_names);

  // The first training image fixes the channel count, and the size unless resizing; both
  // splits share them so a model sees one input shape.
  Geometry geometry = probe(train.files[0]);
  if (image_size > 0) geometry.height = geometry.width = image_size;
  pair.train.images = decode_all(train.files, geometry, image_size > 0, train.files[0]);
  pair.train.labels = torch::tensor(train.labels, torch::kInt64);
  pair.test.images = decode_all(test.files, geometry, image_size > 0, train.files[0]);
  pair.test.labels = torch::tensor(test.labels, torch::kInt64);
  return pair;
}

}  // namespace nad::data
