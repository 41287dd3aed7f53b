// --clean-dir's reader: how a defender's folders map onto the model's classes.
#include <gtest/gtest.h>

#include <fstream>

#include "nad/data/dataset.h"
#include "nad/data/readers.h"
#include "nad/io/png.h"
#include "nad/util/error.h"
#include "support/temp_dir.h"
#include "support/user_error.h"

namespace nad::test {
namespace {

// A 4 x 4 grey PNG whose every pixel is `value`.
void write_image(const std::filesystem::path& file, int value) {
  std::filesystem::create_directories(file.parent_path());
  io::write_png(file, torch::full({4, 4, 1}, value, torch::kUInt8));
}

TEST(CleanDir, NumberedFoldersAreClassNumbers) {
  TempDir dir;
  write_image(dir / "own" / "0" / "a.png", 10);
  write_image(dir / "own" / "2" / "b.png", 20);
  write_image(dir / "own" / "2" / "c.png", 30);
  const data::LabelledFolder f = data::read_labelled_folder(dir / "own", 3, 0);
  EXPECT_EQ(f.mapping, "numbered folders");
  EXPECT_EQ(f.class_names, (std::vector<std::string>{"0", "1", "2"}));
  ASSERT_EQ(f.data.size(), 3);
  EXPECT_EQ(f.data.labels[0].item<int64_t>(), 0);
  EXPECT_EQ(f.data.labels[1].item<int64_t>(), 2);
  EXPECT_EQ(f.data.images[2][0][0][0].item<int>(), 30);  // sorted by file name within a class
  // A folder beyond the model's classes is refused, naming it.
  write_image(dir / "own" / "7" / "d.png", 40);
  const std::string message =
      user_error_message([&] { data::read_labelled_folder(dir / "own", 3, 0); });
  EXPECT_NE(message.find("'" + (dir / "own" / "7").string() + "'"), std::string::npos) << message;
  EXPECT_NE(message.find("only 3 classes"), std::string::npos) << message;
}

TEST(CleanDir, ClassesTxtGivesTheOrder) {
  TempDir dir;
  write_image(dir / "own" / "dog" / "a.png", 10);
  write_image(dir / "own" / "cat" / "b.png", 20);
  std::ofstream(dir / "own" / "classes.txt") << "plane\ndog\r\ncat\n";
  const data::LabelledFolder f = data::read_labelled_folder(dir / "own", 0, 0);
  EXPECT_EQ(f.mapping, "classes.txt");
  EXPECT_EQ(f.class_names, (std::vector<std::string>{"plane", "dog", "cat"}));
  // Folders are read in sorted order (cat, dog); labels follow classes.txt.
  EXPECT_EQ(f.data.labels[0].item<int64_t>(), 2);
  EXPECT_EQ(f.data.labels[1].item<int64_t>(), 1);
  write_image(dir / "own" / "frog" / "c.png", 30);
  const std::string message =
      user_error_message([&] { data::read_labelled_folder(dir / "own", 0, 0); });
  EXPECT_NE(message.find("frog"), std::string::npos) << message;
  EXPECT_NE(message.find("not listed"), std::string::npos) << message;
}

TEST(CleanDir, SortedNamesMustCountTheClasses) {
  TempDir dir;
  write_image(dir / "own" / "b" / "x.png", 1);
  write_image(dir / "own" / "a" / "y.png", 2);
  const data::LabelledFolder f = data::read_labelled_folder(dir / "own", 2, 0);
  EXPECT_EQ(f.mapping, "sorted folders");
  EXPECT_EQ(f.data.labels[0].item<int64_t>(), 0);  // "a"
  const std::string message =
      user_error_message([&] { data::read_labelled_folder(dir / "own", 10, 0); });
  EXPECT_NE(message.find("classes.txt"), std::string::npos) << message;
}

TEST(CleanDir, WithoutADatasetHoldsOutATestPart) {
  TempDir dir;
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 10; ++i) {
      write_image(dir / "own" / std::to_string(k) / (std::to_string(i) + ".png"), 10 * k + i);
    }
  }
  const data::CleanDirData d = data::load_clean_dir((dir / "own").string(), {}, 0.2, 0);
  EXPECT_TRUE(d.test_from_folder);
  EXPECT_EQ(d.pair.train.size(), 24);
  EXPECT_EQ(d.pair.test.size(), 6);  // two of each class
  EXPECT_TRUE(d.pair.test.labels.bincount().eq(2).all().item<bool>());
  EXPECT_THROW(data::load_clean_dir((dir / "missing").string(), {}, 0.2, 0), UserError);
}

}  // namespace
}  // namespace nad::test
