#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "nad/data/dataset.h"

// One reader per on-disk format. Each throws nad::UserError naming the offending file and,
// for a malformed header, the field.
namespace nad::data {

// Limits every reader checks against a file's header before it allocates anything of the
// size the header claims. They sit far above the datasets nad is meant for and keep a
// corrupt or hostile file from asking for more memory than it could possibly fill.
//
// Width or height of one image (IDX rows/cols, PPM, PNG, JPEG, BMP, --image-size).
constexpr int64_t kMaxImageSide = 16384;
// Pixels of one image: 64 Mi (8192 x 8192), 192 MiB as RGB.
constexpr int64_t kMaxImagePixels = int64_t{64} << 20;
// Class folders of GTSRB and image-folder datasets.
constexpr int64_t kMaxClasses = 100000;
// Images (and labels) in one IDX file.
constexpr int64_t kMaxIdxItems = 100'000'000;
// Pixel bytes in one IDX file, after inflating a gzipped one: a gzip file is inflated only
// up to the size its IDX header announces, and that is capped here and by deflate's best
// ratio (kMaxDeflateRatio times the compressed size), so a zip bomb fails cleanly.
constexpr int64_t kMaxIdxBytes = int64_t{4} << 30;
constexpr int64_t kMaxDeflateRatio = 1032;

// IDX image + label files (MNIST layout), gzipped or not.
Dataset read_idx(const std::filesystem::path& images_file,
                 const std::filesystem::path& labels_file);
// A folder holding train-images-idx3-ubyte[.gz] and the three other standard files.
DatasetPair read_mnist_folder(const std::filesystem::path& dir, const std::string& name);

// CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin), in `dir` or in
// `dir/cifar-10-batches-bin`.
DatasetPair read_cifar10_binary(const std::filesystem::path& dir);
// One batch file: records of a label byte (0-9) and 3 x 32 x 32 pixel bytes.
Dataset read_cifar10_batch(const std::filesystem::path& file);

// CIFAR-100 binary release (train.bin, test.bin), in `dir` or in `dir/cifar-100-binary`.
// `coarse` picks the 20 superclass labels instead of the 100 fine ones. Class names come from
// fine_label_names.txt / coarse_label_names.txt beside the files when present, else numbers.
DatasetPair read_cifar100_binary(const std::filesystem::path& dir, bool coarse);
// One CIFAR-100 file's records: a coarse label byte (0-19), a fine label byte (0-99), then
// 3 x 32 x 32 pixel bytes in R, G, B planes.
struct Cifar100Batch {
  torch::Tensor images;         // N x 32 x 32 x 3 uint8
  torch::Tensor fine_labels;    // N int64, 0-99
  torch::Tensor coarse_labels;  // N int64, 0-19
};
// The records in `bytes`; `file` only names the source in error messages.
Cifar100Batch parse_cifar100_records(const unsigned char* bytes, size_t size,
                                     const std::string& file);
Cifar100Batch read_cifar100_file(const std::filesystem::path& file);

// Tiny-ImageNet official layout (in `dir` or `dir/tiny-imagenet-200`): wnids.txt (class order),
// train/<wnid>/images/*.JPEG, and val/images/ labelled by val/val_annotations.txt as the test
// split (the official test split has no labels). Images must be 64 x 64; class names from
// words.txt when present, else the wnids.
DatasetPair read_tiny_imagenet(const std::filesystem::path& dir);

// One row of val_annotations.txt: file name, wnid, then the bounding box (unused).
struct TinyImagenetAnnotation {
  std::string filename;  // a plain file name in val/images/
  std::string wnid;
  size_t line = 0;  // in the file, from 1
};
// Parses val_annotations.txt's text: tab-separated file name, wnid and four box integers per
// line; blank lines are skipped. `file` only names the source in error messages.
std::vector<TinyImagenetAnnotation> parse_tiny_imagenet_val_annotations(const std::string& text,
                                                                        const std::string& file);

// GTSRB official layout, every image resized to 32 x 32.
DatasetPair read_gtsrb(const std::filesystem::path& dir);

// One row of a GTSRB annotation file (GT-000NN.csv, GT-final_test.csv).
struct GtsrbAnnotation {
  std::string filename;  // a plain file name beside the CSV (no folders)
  int64_t class_id = 0;
  size_t line = 0;  // in the CSV, from 1
};
// Reads a GTSRB annotation file: semicolon separated, columns found by header name. Filename
// and ClassId are required; Width, Height and Roi.X1/Y1/X2/Y2, when present, must be numbers
// with the ROI inside the Width x Height the row gives.
std::vector<GtsrbAnnotation> read_gtsrb_annotations(const std::filesystem::path& csv);

// train/<class>/* and test/<class>/*; classes in sorted order; image_size > 0 resizes.
DatasetPair read_image_folder(const std::filesystem::path& dir, int image_size,
                              const std::string& name);

// A defender's own labelled images, root/<class folder>/<image>. How folders map to classes:
// root/classes.txt (one folder name per line, line k naming class k) when it exists; else, when
// every folder is named by a number, that number; else the folders in sorted order. A folder that
// maps to no class of `num_classes` (when > 0) is a UserError naming it; classes without a folder
// simply have no images. The images must share one size unless image_size > 0 resizes them.
struct LabelledFolder {
  Dataset data;
  std::vector<std::string> class_names;  // from classes.txt, or the folder names, or numbers
  std::string mapping;                   // "classes.txt" | "numbered folders" | "sorted folders"
  std::vector<std::filesystem::path> files;  // the image of each row
};
LabelledFolder read_labelled_folder(const std::filesystem::path& root, int64_t num_classes,
                                    int image_size);

// The image files directly in `dir` (.png, .jpg, .jpeg, .ppm, .bmp; sorted by name), decoded into
// one N x H x W x C uint8 tensor. `channels` 1 or 3 converts each image; 0 takes the first image's.
// The images must share one size unless image_size > 0 resizes them.
struct ImageFiles {
  torch::Tensor images;
  std::vector<std::filesystem::path> files;
};
ImageFiles read_image_files(const std::filesystem::path& dir, int image_size, int channels = 0);
// Whether `dir` holds image files directly (not only in subfolders).
bool has_image_files(const std::filesystem::path& dir);

// A PPM (P6, 8-bit, comments allowed) as H x W x 3 uint8.
torch::Tensor read_ppm(const std::filesystem::path& file);
// Any PNG, JPEG, BMP or PPM file as H x W x C uint8, C = `channels` (1 or 3).
torch::Tensor read_image(const std::filesystem::path& file, int channels);
// An image's size and colour from its header alone (same formats and limits as read_image);
// channels is 1 for grey (with or without alpha), else 3.
struct ImageInfo {
  int64_t height = 0;
  int64_t width = 0;
  int channels = 3;
};
ImageInfo read_image_info(const std::filesystem::path& file);
// Bilinear resize of an H x W x C uint8 image.
torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width);

}  // namespace nad::data
