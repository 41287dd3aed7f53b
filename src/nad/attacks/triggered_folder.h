#pragma once
#include <filesystem>
#include <string>

#include "nad/attacks/attack.h"

namespace nad::attacks {

// Test images that someone else triggered, for attacks nad does not implement:
// DIR/<true label>/*.png|jpg. nad poison's test_triggered/ folder and BackdoorBench's saved
// bd_test_dataset/ folder both have this layout. Folders map to labels as for --clean-dir
// (classes.txt, else numbered folders), and the attacker's label of each row follows `options`
// (all-to-one: options.target; all-to-all: the next class).
struct TriggeredFolder {
  TriggeredSet set;
  // All-to-one: rows of the target class, left out as nad's own triggered test sets leave them
  // out (an image of the target class says nothing about the backdoor).
  int64_t dropped_target_rows = 0;
  std::string mapping;  // how folders were mapped to labels
};

// `height`, `width`, `channels`: the test set's, which the images must match exactly (a
// trigger is pixel-precise, so nothing is resized).
TriggeredFolder read_triggered_folder(const std::filesystem::path& dir,
                                      const AttackOptions& options, int64_t num_classes,
                                      int64_t height, int64_t width, int64_t channels);

}  // namespace nad::attacks
