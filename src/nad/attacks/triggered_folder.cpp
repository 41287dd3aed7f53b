#include "nad/attacks/triggered_folder.h"

#include "nad/data/readers.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

TriggeredFolder read_triggered_folder(const std::filesystem::path& dir,
                                      const AttackOptions& options, int64_t num_classes,
                                      int64_t height, int64_t width, int64_t channels) {
  const std::string where = flag::triggered_test + " " + dir.string();
  if (!std::filesystem::is_directory(dir)) throw UserError(where + ": no such folder");
  if (options.target < 0 || options.target >= num_classes) {
    throw UserError(flag::target + " " + std::to_string(options.target) + " is not a class (0-" +
                    std::to_string(num_classes - 1) + ")");
  }
  data::LabelledFolder folder;
  try {
    folder = data::read_labelled_folder(dir, num_classes, 0);
  } catch (const UserError& e) {
    throw UserError(flag::triggered_test + ": " + std::string(e.what()));
  }
  if (folder.mapping == "sorted folders") {
    // Sorted folder names are only safe when every class has a folder, and a triggered test
    // set usually lacks the target's.
    throw UserError(where + ": name each folder by the images' true label (0-" +
                    std::to_string(num_classes - 1) +
                    "), as nad poison and BackdoorBench do, or list the folder names in order in " +
                    (dir / "classes.txt").string());
  }
  const data::Dataset& data = folder.data;
  if (data.height() != height || data.width() != width || data.channels() != channels) {
    throw UserError(where + ": its images are " + std::to_string(data.width()) + "x" +
                    std::to_string(data.height()) + "x" + std::to_string(data.channels()) +
                    " but the test set's are " + std::to_string(width) + "x" +
                    std::to_string(height) + "x" + std::to_string(channels) +
                    " (triggered images are not resized: a trigger is pixel-precise)");
  }
  TriggeredFolder out;
  out.mapping = folder.mapping;
  torch::Tensor rows = torch::arange(data.size(), torch::kLong);
  if (options.label_mode == LabelMode::kAllToOne) {
    rows = torch::nonzero(data.labels != options.target).flatten();
    out.dropped_target_rows = data.size() - rows.size(0);
  }
  if (rows.size(0) == 0) {
    throw UserError(where + ": no image of a class other than the target " +
                    std::to_string(options.target));
  }
  out.set.data = data.select(rows);
  out.set.attack_targets = target_labels(out.set.data.labels, options, num_classes);
  return out;
}

}  // namespace nad::attacks
