#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace nad::data {

// A labelled image set held in memory: images N x H x W x C uint8, labels N int64, on the CPU.
struct Dataset {
  torch::Tensor images;
  torch::Tensor labels;

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
  int64_t height() const { return images.size(1); }
  int64_t width() const { return images.size(2); }
  int64_t channels() const { return images.size(3); }
  // The rows at `indices` (int64), copied.
  Dataset select(const torch::Tensor& indices) const;
  Dataset to(torch::Device device) const {
    if (!images.defined()) return *this;  // an empty split (no hold-out) stays empty
    return {images.to(device), labels.to(device)};
  }
};

// Triggered test images for ASR and robust accuracy: the images with their true labels, and
// the label the attacker wants for each row.
struct TriggeredSet {
  Dataset data;
  torch::Tensor attack_targets;  // int64, one per row
};

// The train and test splits of one dataset plus what the rest of the tool needs to know.
struct DatasetPair {
  std::string name;
  std::vector<std::string> class_names;
  // Whether a horizontal flip keeps an image in its class (not for digits or traffic signs).
  bool natural_hflip = true;
  Dataset train;
  Dataset test;

  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
};

struct DatasetOptions {
  std::string name;  // mnist | fashion-mnist | cifar10 | cifar100 | gtsrb | tiny-imagenet | folder
  std::string data_dir;  // empty: the dataset's default location, where it has one
  int image_size = 0;    // folder only: resize to image_size x image_size (0 keeps the size)
  std::string cifar100_labels = "fine";  // cifar100 only: fine (100 classes) | coarse (20)
};

// The dataset names `load_dataset` understands.
const std::vector<std::string>& dataset_names();

// Loads both splits, decoding everything once. Throws UserError naming the file on any
// missing or malformed input.
DatasetPair load_dataset(const DatasetOptions& options);

// The defender's own folder (--clean-dir, see read_labelled_folder) as a run's data: `train` is
// every image of it, and `test` the test split of `dataset` when one is named (its classes and
// image shape must match), else a stratified `test_fraction` of the folder, held out with `seed`.
struct CleanDirData {
  DatasetPair pair;
  bool test_from_folder = false;
  std::string mapping;  // how the folders were mapped to classes
};
CleanDirData load_clean_dir(const std::string& clean_dir, const DatasetOptions& dataset,
                            double test_fraction, uint64_t seed);

}  // namespace nad::data
