#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "nad/attacks/attack.h"
#include "nad/data/dataset.h"
#include "nad/defenses/attention.h"
#include "nad/defenses/lr_search.h"
#include "nad/defenses/neural_cleanse.h"
#include "nad/defenses/strip.h"

// Typed configuration of each end-to-end run. The CLI fills these; the library validates and
// runs them. Defaults live here.
namespace nad::pipeline {

struct CommonConfig {
  data::DatasetOptions dataset;
  // --clean-dir: the defender's own labelled images replace the dataset's training set (and,
  // without --dataset, hold out clean_dir_test_fraction of themselves as the test set).
  std::string clean_dir;
  double clean_dir_test_fraction = 0.2;
  attacks::AttackOptions attack;
  // --triggered-test DIR: ASR and robust accuracy on images someone else triggered,
  // DIR/<true label>/*, instead of nad's trigger (attack.target and label mode still apply).
  std::string triggered_test;
  uint64_t seed = 0;
  int threads = 0;  // 0: all cores
  std::string device = "cpu";
  std::string out;
  std::string resume;              // --resume DIR: continue the interrupted run in DIR
  int64_t eval_batch_size = 0;     // 0: train::default_eval_batch_size(device)
  std::string precision = "auto";  // auto | fp32 | bf16
  bool channels_last = true;
  bool cuda_graphs = true;    // --device cuda: full training batches as CUDA graphs
  double dist_timeout = 300;  // seconds: how long a rank waits for the others
  bool sync_bn = false;       // distributed runs: BatchNorm statistics over all ranks
  bool quiet = false;

  nlohmann::json to_json() const;
};

// Training-time augmentation, as given on the command line.
struct AugmentConfig {
  int64_t crop_padding = 4;
  std::optional<bool> horizontal_flip;  // default: when natural for the dataset
  int64_t cutout_holes = 0;
  int64_t cutout_length = 3;
  std::string cutout_fill = "zero";  // zero | noise
};

inline AugmentConfig with_cutout(int64_t holes, int64_t length, const char* fill) {
  AugmentConfig config;
  config.cutout_holes = holes;
  config.cutout_length = length;
  config.cutout_fill = fill;
  return config;
}

// Defenses use Cutout as the NAD reference does, but with noise-filled holes (see
// data::CutoutFill): three 4 x 4 holes. Measured on Fashion-MNIST's corner trigger, one 2 x 2
// noise hole left the NAD student at ASR 22%, two 4 x 4 holes 7.3%, four 4.8%; with zero-filled
// holes (the reference's Cutout) it stayed at 88%.
inline AugmentConfig defense_augment() { return with_cutout(3, 4, "noise"); }

// The NAD reference code's own augmentation (its Cutout: one zero-filled hole of side 3), which
// `--schedule reference` brings with it unless Cutout options are given.
inline AugmentConfig reference_augment() { return with_cutout(1, 3, "zero"); }

// How to read a --model / --teacher checkpoint that does not say what it holds (a PyTorch
// state_dict): nad's model.pt says it all.
struct ModelFileOptions {
  std::string arch;         // empty: the file's, else guessed from the weight names
  int64_t num_classes = 0;  // 0: the file's, else the classifier's rows
  bool allow_partial = false;
  // --input-norm: preset or M1,M2,M3/S1,S2,S3 for every checkpoint the run loads; empty: each
  // file's own (nad's model.pt, a BackdoorBench record's dataset), else none.
  std::string input_norm;

  nlohmann::json to_json() const;
};

// What `train` and `poison` make before poisoning when the user did not supply it: Trojan's
// trigger (no --trigger-file) and CL's clean model for PGD, both from a clean model that is
// either --clean-model or trained briefly here.
struct AttackPrepConfig {
  std::string clean_model;      // a clean checkpoint; empty: train one for `epochs`
  std::string arch;             // of the model trained here; empty: the run's architecture
  int epochs = 5;               // --prep-epochs
  int64_t trigger_size = 5;     // trojan: patch side
  int64_t trigger_layer = -1;   // trojan: group holding the neuron; -1: the last
  int64_t trigger_neuron = -1;  // trojan: -1: the largest summed outgoing weight

  nlohmann::json to_json() const;
};

struct TrainConfig {
  CommonConfig common;
  AttackPrepConfig prep;
  std::string arch = "wrn-16-1";
  std::string input_norm = "none";  // the trained model's input normalisation (--input-norm)
  int epochs = 30;
  int64_t batch_size = 128;
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";
  std::vector<int> milestones;
  AugmentConfig augment;
  // --exclude-indices: rows of the (poisoned) training set left out of training, one index per
  // line (inspect-data's suspects); empty: none.
  std::string exclude_indices;
};

// `nad predict`: a model's predictions on a folder of images or a dataset split.
struct PredictConfig {
  CommonConfig common;  // --dataset only without --images; --image-size resizes either
  std::string model;
  ModelFileOptions model_options;
  std::string images;          // --images DIR: DIR/* (no labels) or DIR/<class>/* (labelled)
  std::string split = "test";  // --dataset: test | train
  bool logits = false;         // also write logits.npy
};

struct EvalConfig {
  CommonConfig common;
  std::string model;
  ModelFileOptions model_options;
};

// Neural Cleanse as `nad scan` runs it, and as the defenses' --verify does before and after.
struct ScanOptions {
  defenses::NeuralCleanseOptions nc;
  double threshold = 2;           // anomaly index above which a class is flagged (the paper's)
  double holdout_fraction = 0.2;  // share of the clean images kept to check reversed triggers
  defenses::AnomalyScale anomaly_scale = defenses::AnomalyScale::kLinear;  // the verdict's
  // How the command line spells these options, for messages: "--" in nad scan,
  // flag::verify_scan_prefix beside a defense's --verify and --select-by scan.
  std::string option_prefix = "--";

  nlohmann::json to_json() const;
};

// `nad scan`: is this model backdoored, and towards which class? No attack knowledge is used;
// attack options only report whether the flagged class is the real target.
struct ScanConfig {
  CommonConfig common;
  std::string model;
  ModelFileOptions model_options;
  double clean_ratio = 0.05;
  std::string clean_indices;  // a file from an earlier run; overrides clean_ratio
  ScanOptions scan;
  bool fail_if_flagged = false;  // exit code 1 when a class is flagged
};

// Options shared by the finetuning baseline and NAD.
struct DefenseConfig {
  CommonConfig common;
  std::string model;
  ModelFileOptions model_options;
  double clean_ratio = 0.05;
  std::string clean_indices;  // a file from an earlier run; overrides clean_ratio
  std::string lr = "auto";    // "auto" or a number
  defenses::LrSearchOptions lr_search;
  double validation_fraction = 0.1;  // share of the clean subset held out by --lr auto
  // --lr auto's choice among the rates within tolerance: "accuracy" (the largest) or "scan"
  // (the one a Neural Cleanse trigger, reversed on the model before, moves least).
  std::string select_by = "accuracy";
  std::string schedule = "cosine";  // constant | step | cosine | reference
  int epochs = 20;                  // finetuning / student epochs
  int patience = 0;  // early stopping on hold-out accuracy after this many epochs (0: off)
  int64_t batch_size = 64;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  AugmentConfig augment = defense_augment();
  // --verify: Neural Cleanse on the model before and after, reported without attack knowledge.
  bool verify = false;
  ScanOptions verify_scan;
};

struct EraseConfig {
  DefenseConfig defense;
  std::string teacher;       // a checkpoint; empty: finetune one
  std::string teacher_arch;  // when the teacher file does not say it; empty: guessed
  int teacher_epochs = 10;
  std::vector<double> betas;        // empty: the model's defaults
  std::vector<std::string> groups;  // groups distilled (numbers or names); empty: all
  double power = 2.0;
  std::string attention = "sum-p";
};

// `nad attention`: attention maps of one or more models side by side.
struct AttentionConfig {
  CommonConfig common;
  std::string model;
  std::vector<std::string> compare;  // more models drawn below the first
  std::vector<std::string> labels;   // one per model; default: the folder or file name
  ModelFileOptions model_options;
  int64_t images = 4;         // test images drawn with the seed
  std::vector<int64_t> rows;  // or these test rows
  double power = 2.0;
  std::string attention = "sum-p";
};

// `nad table`: a grid of datasets x attacks x defenses from an experiment file.
// A defense as the CLI's defense registry (cli/defense_registry.cpp) describes it to the table.
struct DefenseInfo {
  std::string name;   // the subcommand, e.g. "erase"
  std::string title;  // the table's default column name, e.g. "NAD"
  // Data-free defenses (clp) get no clean subset, no shared defense options and no --lr.
  bool uses_clean_data = true;
  // Whether the defense finetunes with SGD: only those take the table's shared finetuning options
  // (defense_options) and its shared --lr; the others (anp) get the clean subset alone.
  bool finetunes = true;
  bool resumable = true;
};

struct TableConfig {
  std::string config_file;            // experiments/*.json
  std::vector<DefenseInfo> defenses;  // the defenses an experiment may name
  std::string out;
  std::string resume;    // --resume DIR: out = DIR, config from DIR/experiment.json unless given
  std::string data_dir;  // overrides every dataset's data_dir (configs with one dataset)
  std::vector<std::string> attacks;  // only these rows of the experiment; empty: all
  std::vector<std::string> models;   // "DATASET/ATTACK=FILE": backdoored models to use as given
  // "DATASET/ATTACK=DIR": measure that row's ASR on these triggered images (--triggered-test)
  std::vector<std::string> triggered_tests;
  // --shard I/N: run only rows (dataset x attack) r with r % N == I, so that N machines can split
  // a grid over a shared folder; each writes table-shard-I-of-N.* from its own rows.
  int shard_index = 0;
  int shard_count = 1;
  // --merge: run nothing; write table.md, table.csv and results.json from the finished cells,
  // and fail naming the cells that are not finished.
  bool merge = false;
  int threads = 0;
  std::string device = "cpu";
  bool quiet = false;
};

// `nad trojan-trigger`: a TrojanNN patch optimised on a given model.
struct TrojanTriggerConfig {
  data::DatasetOptions dataset;
  std::string model;
  ModelFileOptions model_options;
  std::string out;  // the PNG file to write
  int64_t layer = -1;
  int64_t size = 5;
  int64_t neuron = -1;
  int steps = 300;
  double lr = 0.05;
  int64_t images = 128;
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "cpu";
  bool quiet = false;
};

// `nad prune`: Fine-pruning, then finetuning with the pruned channels held at zero.
struct PruneConfig {
  DefenseConfig defense;
  std::string prune_layer;  // empty: the last group's output
  double max_acc_drop = 10;
  double prune_ratio = 0.9;
  int curve_points = 11;
};

// `nad mcr`: Mode Connectivity Repair between --model and a finetuned copy (or --end-model).
struct McrConfig {
  DefenseConfig defense;
  std::string end_model;  // empty: finetune --model on the clean data
  int curve_epochs = 20;
  double curve_lr = 0.01;
  int points = 11;  // evaluated along t in [0, 1]
  double t = 0.3;   // the model written out
};

// `nad strip`: STRIP input-level detection (defenses/strip.h). Without threshold_file it
// calibrates on the dataset: overlays from the clean subset, threshold at --frr on the clean
// test set, FAR on the triggered test set when an attack is given; it writes strip.json beside
// overlays.png. With threshold_file and images it flags each image of the folder instead.
struct StripConfig {
  CommonConfig common;  // the dataset is only for calibration
  std::string model;
  ModelFileOptions model_options;
  double clean_ratio = 0.05;     // the defender's clean training images, overlays drawn from them
  int64_t overlays = 100;        // N clean images blended with each input
  defenses::StripMethod method;  // how inputs and overlays combine, which entropy is taken
  double frr = 0.01;             // share of clean inputs the threshold may flag
  int64_t test_images = 0;       // clean and triggered test images measured, seeded (0: all)
  std::string threshold_file;    // flag mode: the strip.json of a calibration run
  std::string images;            // flag mode: the folder of images to check
};

// `nad export`: a checkpoint's weights as a bare PyTorch state_dict.
struct ExportConfig {
  std::string model;
  std::string out;             // the file to write
  std::string format = "zip";  // zip | legacy
  ModelFileOptions model_options;
  std::vector<int64_t> input_shape;  // [C, H, W] when the file does not say it
};

// `nad poison`: the poisoned training set written out as an image folder.
struct PoisonConfig {
  CommonConfig common;
  AttackPrepConfig prep;       // arch defaults to wrn-16-1 (mnist-cnn for one-channel data)
  int64_t pairs_per_row = 4;   // samples.png
  std::string format = "png";  // png: image folders; npy: NumPy arrays, with the triggered test set
};

struct DemoConfig {
  std::string data_dir;  // Fashion-MNIST; empty: the Debian package's folder
  std::string out = "demo-out";
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "cpu";
  int train_epochs = 3;
};

}  // namespace nad::pipeline
