#include "nad/data/dataset.h"

#include <filesystem>
#include <string>

#include "nad/data/readers.h"
#include "nad/data/subset.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::data {
namespace fs = std::filesystem;

namespace {

// Where the Debian package dataset-fashion-mnist installs the files.
const char* const kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

std::string joined_names() {
  std::string out;
  for (const std::string& name : dataset_names()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

DatasetPair load_cifar10(const fs::path& dir) {
  if (fs::is_regular_file(dir / "data_batch_1.bin") ||
      fs::is_regular_file(dir / "cifar-10-batches-bin" / "data_batch_1.bin")) {
    return read_cifar10_binary(dir);
  }
  if (fs::is_directory(dir / "train") && fs::is_directory(dir / "test")) {
    DatasetPair pair = read_image_folder(dir, 0, "cifar10");
    if (pair.num_classes() != 10) {
      throw UserError(
          "'" + (dir / "train").string() + "' has " + std::to_string(pair.num_classes()) +
          " class folders but CIFAR-10 has 10; use " + flag::dataset + " folder for other sets");
    }
    return pair;
  }
  throw UserError("'" + dir.string() +
                  "' is not a CIFAR-10 folder: expected either the binary release "
                  "(data_batch_1.bin ... data_batch_5.bin and test_batch.bin, directly or in "
                  "cifar-10-batches-bin/) or an image-folder layout (train/<class>/*.png|jpg and "
                  "test/<class>/*)");
}

DatasetPair load_cifar100(const fs::path& dir, const std::string& labels) {
  if (labels != "fine" && labels != "coarse") {
    throw UserError(flag::cifar100_labels + " must be fine or coarse, not '" + labels + "'");
  }
  if (fs::is_regular_file(dir / "train.bin") ||
      fs::is_regular_file(dir / "cifar-100-binary" / "train.bin")) {
    return read_cifar100_binary(dir, labels == "coarse");
  }
  if (fs::is_directory(dir / "train") && fs::is_directory(dir / "test")) {
    // Folders carry one label per image: the fine classes.
    if (labels == "coarse") {
      throw UserError(
          "'" + dir.string() + "' is an image-folder layout, which has no superclasses: " +
          flag::cifar100_labels + " coarse needs the binary release (train.bin, test.bin)");
    }
    DatasetPair pair = read_image_folder(dir, 0, "cifar100");
    if (pair.num_classes() != 100) {
      throw UserError(
          "'" + (dir / "train").string() + "' has " + std::to_string(pair.num_classes()) +
          " class folders but CIFAR-100 has 100; use " + flag::dataset + " folder for other sets");
    }
    return pair;
  }
  throw UserError("'" + dir.string() +
                  "' is not a CIFAR-100 folder: expected either the binary release (train.bin "
                  "and test.bin, directly or in cifar-100-binary/) or an image-folder layout "
                  "(train/<class>/*.png|jpg and test/<class>/*)");
}

}  // namespace

Dataset Dataset::select(const torch::Tensor& indices) const {
  Dataset out;
  if (!images.defined()) return out;
  const torch::Tensor index = indices.to(torch::kLong);
  out.images = images.index_select(0, index);
  out.labels = labels.index_select(0, index);
  return out;
}

const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> names = {"mnist", "fashion-mnist", "cifar10", "cifar100",
                                                 "gtsrb", "tiny-imagenet", "folder"};
  return names;
}

DatasetPair load_dataset(const DatasetOptions& options) {
  const std::string& name = options.name;
  bool known = false;
  for (const std::string& candidate : dataset_names()) known = known || candidate == name;
  if (!known) {
    throw UserError("unknown dataset '" + name + "' (valid names: " + joined_names() + ")");
  }

  fs::path dir = options.data_dir;
  if (dir.empty()) {
    if (name != "fashion-mnist") {
      throw UserError(flag::data_dir + " is required for dataset '" + name + "'");
    }
    dir = kFashionMnistDefaultDir;
  }
  if (!fs::is_directory(dir)) {
    throw UserError(
        "data directory '" + dir.string() + "' does not exist or is not a directory" +
        (name == "fashion-mnist" && options.data_dir.empty()
             ? " (install the Debian package dataset-fashion-mnist or pass " + flag::data_dir + ")"
             : ""));
  }

  DatasetPair pair;
  if (name == "mnist" || name == "fashion-mnist") {
    pair = read_mnist_folder(dir, name);
  } else if (name == "cifar10") {
    pair = load_cifar10(dir);
  } else if (name == "cifar100") {
    pair = load_cifar100(dir, options.cifar100_labels);
  } else if (name == "gtsrb") {
    pair = read_gtsrb(dir);
  } else if (name == "tiny-imagenet") {
    pair = read_tiny_imagenet(dir);
  } else {
    pair = read_image_folder(dir, options.image_size, "folder");
  }
  pair.name = name;
  // Mirroring changes a digit or a traffic sign, not a photo or a garment.
  pair.natural_hflip = !(name == "mnist" || name == "gtsrb");
  return pair;
}

CleanDirData load_clean_dir(const std::string& clean_dir, const DatasetOptions& dataset,
                            double test_fraction, uint64_t seed) {
  CleanDirData out;
  if (!dataset.name.empty()) {
    out.pair = load_dataset(dataset);
    const Dataset& test = out.pair.test;
    LabelledFolder folder =
        read_labelled_folder(clean_dir, out.pair.num_classes(), dataset.image_size);
    const Dataset& own = folder.data;
    if (own.height() != test.height() || own.width() != test.width() ||
        own.channels() != test.channels()) {
      throw UserError(flag::clean_dir + " '" + clean_dir + "' holds " +
                      std::to_string(own.width()) + "x" + std::to_string(own.height()) + "x" +
                      std::to_string(own.channels()) + " images, but " + dataset.name + " has " +
                      std::to_string(test.width()) + "x" + std::to_string(test.height()) + "x" +
                      std::to_string(test.channels()) + " (" + flag::image_size + " resizes)");
    }
    out.pair.train = own;
    out.mapping = folder.mapping;
    return out;
  }
  if (!(test_fraction > 0 && test_fraction < 1)) {
    throw UserError(flag::clean_dir_test_fraction + " must be in (0, 1)");
  }
  LabelledFolder folder = read_labelled_folder(clean_dir, 0, dataset.image_size);
  out.mapping = folder.mapping;
  out.test_from_folder = true;
  out.pair.name = "clean-dir";
  out.pair.class_names = folder.class_names;
  const torch::Tensor all = torch::arange(folder.data.size(), torch::kLong);
  const auto [keep, held] = split_holdout(all, folder.data.labels, test_fraction, seed + 5);
  if (keep.numel() < 2 || held.numel() < 1) {
    throw UserError(flag::clean_dir + " '" + clean_dir + "' has too few images (" +
                    std::to_string(folder.data.size()) + ") to hold some out for testing");
  }
  out.pair.train = folder.data.select(keep);
  out.pair.test = folder.data.select(held);
  return out;
}

}  // namespace nad::data
