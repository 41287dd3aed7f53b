// `nad predict` on a folder of images and on a dataset split: predictions.csv, logits.npy.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "nad/data/readers.h"
#include "nad/io/png.h"
#include "nad/models/checkpoint.h"
#include "nad/models/classifier.h"
#include "support/cli.h"
#include "support/python.h"
#include "support/temp_dir.h"

namespace nad::test {
namespace {

namespace fs = std::filesystem;

// The rows of a CSV file (RFC 4180 quoting), header included.
std::vector<std::vector<std::string>> read_csv(const fs::path& file) {
  const std::string text = read_text(file);
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
    } else if (c == '\n') {
      rows.back().push_back(field);
      field.clear();
      rows.emplace_back();
    } else {
      field += c;
    }
  }
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

// A float32 .npy file's shape (2-D) and values.
torch::Tensor read_float_npy(const fs::path& file) {
  const std::string bytes = read_text(file);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t length = static_cast<unsigned char>(bytes[8]) |
                        (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
  const std::string header = bytes.substr(10, length);
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  const size_t open = header.find("'shape': (");
  EXPECT_NE(open, std::string::npos) << header;
  int64_t rows = 0, cols = 0;
  std::sscanf(header.c_str() + open, "'shape': (%ld, %ld)", &rows, &cols);
  const std::string data = bytes.substr(10 + length);
  EXPECT_EQ(data.size(), static_cast<size_t>(rows * cols * 4));
  return torch::from_blob(const_cast<char*>(data.data()), {rows, cols}, torch::kFloat).clone();
}

class PredictCli : public ::testing::Test {
 protected:
  // A randomly initialised mnist-cnn saved as nad's model.pt, and 16 x 16 generated images.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    write_synthetic_idx(*dir_ / "data", 40, 30, 16, 4, 7);
    torch::manual_seed(3);
    models::Classifier model = models::create_model({"mnist-cnn", 1, 10, 16, 16});
    models::save_checkpoint(*dir_ / "model.pt", model, {"mnist-cnn", 1, 10, 16, 16});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string model() { return (*dir_ / "model.pt").string(); }
  static std::string data() { return " --dataset mnist --data-dir " + (*dir_ / "data").string(); }
  static TempDir* dir_;
};
TempDir* PredictCli::dir_ = nullptr;

// The test split by --dataset and the same images as a flat folder (one with a comma in its
// name) agree row for row; probabilities are the softmax of the logits, rows sum to 1, and
// the dataset's accuracy is nad eval's.
TEST_F(PredictCli, FolderAndSplitAgreeAndProbabilitiesAreTheSoftmax) {
  const fs::path split_out = *dir_ / "split";
  CommandResult split = run_nad("predict" + data() + " --model " + model() +
                                " --logits --quiet --out " + split_out.string());
  ASSERT_EQ(split.exit_code, 0) << split.output;
  const auto split_rows = read_csv(split_out / "predictions.csv");
  ASSERT_EQ(split_rows.size(), 31u);
  EXPECT_EQ(split_rows[0],
            (std::vector<std::string>{"index", "predicted", "class", "probability", "label"}));
  const torch::Tensor logits = read_float_npy(split_out / "logits.npy");
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{30, 10}));
  const torch::Tensor softmax = torch::softmax(logits.to(torch::kDouble), 1);
  EXPECT_LT((softmax.sum(1) - 1).abs().max().item<double>(), 1e-9);
  int64_t correct = 0;
  for (int64_t i = 0; i < 30; ++i) {
    const auto& row = split_rows[static_cast<size_t>(i + 1)];
    ASSERT_EQ(row.size(), 5u);
    EXPECT_EQ(row[0], std::to_string(i));
    EXPECT_EQ(std::stoll(row[1]), softmax[i].argmax().item<int64_t>());
    EXPECT_NEAR(std::stod(row[3]), softmax[i].max().item<double>(), 2e-6);
    correct += row[1] == row[4];
  }
  const nlohmann::json summary = read_json(split_out / "summary.json");
  EXPECT_EQ(summary["images"], 30);
  EXPECT_NEAR(summary["accuracy"].get<double>(), 100.0 * correct / 30, 1e-9);
  CommandResult eval = run_nad("eval" + data() + " --model " + model() + " --quiet --out " +
                               (*dir_ / "eval").string());
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_NEAR(summary["accuracy"].get<double>(),
              read_json(*dir_ / "eval" / "summary.json")["clean_acc"].get<double>(), 1e-9);

  // The first seven test images as files, in the order their names sort.
  const data::DatasetPair pair = data::read_mnist_folder(*dir_ / "data", "mnist");
  const fs::path flat = *dir_ / "flat";
  fs::create_directories(flat);
  const std::vector<std::string> names = {"a,1.png", "b.png", "c.png",           "d.png",
                                          "e.png",   "f.png", "g \"quoted\".png"};
  for (size_t i = 0; i < names.size(); ++i) {
    io::write_png(flat / names[i], pair.test.images[static_cast<int64_t>(i)]);
  }
  const fs::path folder_out = *dir_ / "folder";
  CommandResult folder = run_nad("predict --images " + flat.string() + " --model " + model() +
                                 " --logits --quiet --out " + folder_out.string());
  ASSERT_EQ(folder.exit_code, 0) << folder.output;
  const auto rows = read_csv(folder_out / "predictions.csv");
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ(rows[0][0], "file");
  const torch::Tensor folder_logits = read_float_npy(folder_out / "logits.npy");
  ASSERT_EQ(folder_logits.size(0), 7);
  EXPECT_TRUE(torch::allclose(folder_logits, logits.slice(0, 0, 7), 1e-5, 1e-5));
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(rows[i + 1][0], names[i]);
    EXPECT_EQ(rows[i + 1][1], split_rows[i + 1][1]);
    EXPECT_EQ(rows[i + 1][4], "");  // no labels in a flat folder
  }
  EXPECT_TRUE(read_json(folder_out / "summary.json")["accuracy"].is_null());

  // numpy reads the logits file as float32 of that shape.
  if (python_torch_available()) {
    const CommandResult numpy =
        run_shell(std::string(kPython) + " -c \"import numpy, sys; a = numpy.load(sys.argv[1]); " +
                  "print(a.dtype, a.shape, '%.2f' % a.astype(numpy.float64).sum())\" " +
                  (folder_out / "logits.npy").string());
    ASSERT_EQ(numpy.exit_code, 0) << numpy.output;
    char expected[64];
    std::snprintf(expected, sizeof expected, "float32 (7, 10) %.2f",
                  folder_logits.to(torch::kDouble).sum().item<double>());
    EXPECT_NE(numpy.output.find(expected), std::string::npos) << numpy.output << expected;
  }
}

// Class folders give the label column and an accuracy.
TEST_F(PredictCli, ClassFoldersGiveTheTrueLabels) {
  const data::DatasetPair pair = data::read_mnist_folder(*dir_ / "data", "mnist");
  const fs::path root = *dir_ / "labelled";
  for (int64_t i = 0; i < 12; ++i) {
    const int64_t label = pair.test.labels[i].item<int64_t>();
    fs::create_directories(root / std::to_string(label));
    io::write_png(root / std::to_string(label) / (std::to_string(i) + ".png"), pair.test.images[i]);
  }
  const fs::path out = *dir_ / "labelled-out";
  CommandResult run = run_nad("predict --images " + root.string() + " --model " + model() +
                              " --quiet --out " + out.string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto rows = read_csv(out / "predictions.csv");
  ASSERT_EQ(rows.size(), 13u);
  int64_t correct = 0;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::string& file = rows[r][0];
    EXPECT_EQ(file.substr(0, file.find('/')), rows[r][4]) << file;  // folder = label
    correct += rows[r][1] == rows[r][4];
  }
  EXPECT_NEAR(read_json(out / "summary.json")["accuracy"].get<double>(), 100.0 * correct / 12,
              1e-9);
  EXPECT_FALSE(fs::exists(out / "logits.npy"));
}

TEST_F(PredictCli, MistakesExitTwoNamingTheOption) {
  const fs::path flat = *dir_ / "mistakes";
  fs::create_directories(flat);
  io::write_png(flat / "big.png", torch::zeros({20, 20, 1}, torch::kUInt8));
  const std::string out = " --quiet --out " + (*dir_ / "mistakes-out").string();
  CommandResult both =
      run_nad("predict --images " + flat.string() + data() + " --model " + model() + out);
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.output.find("not both"), std::string::npos) << both.output;
  CommandResult size = run_nad("predict --images " + flat.string() + " --model " + model() + out);
  EXPECT_EQ(size.exit_code, 2);
  EXPECT_NE(size.output.find("--image-size 16"), std::string::npos) << size.output;
  // --image-size resizes them.
  CommandResult resized = run_nad("predict --images " + flat.string() + " --image-size 16" +
                                  " --model " + model() + out);
  EXPECT_EQ(resized.exit_code, 0) << resized.output;
  CommandResult missing =
      run_nad("predict --images " + (*dir_ / "nope").string() + " --model " + model() + out);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--images"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace nad::test
