#include "common.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "defense_registry.h"
#include "nad/data/dataset.h"
#include "nad/io/json.h"
#include "nad/pipeline/context.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::cli {

namespace fs = std::filesystem;

namespace {
int finished_exit_code = 0;
}  // namespace

void set_exit_code(int code) { finished_exit_code = code; }
int exit_code() { return finished_exit_code; }

void add_common_options(CLI::App& app, pipeline::CommonConfig& config, bool needs_out) {
  app.add_option(flag::dataset, config.dataset.name,
                 "mnist | fashion-mnist | cifar10 | cifar100 | gtsrb | tiny-imagenet | folder")
      ->required()
      ->check(CLI::IsMember(data::dataset_names()));
  app.add_option(flag::data_dir, config.dataset.data_dir,
                 "dataset folder (fashion-mnist defaults to /usr/share/datasets/fashion-mnist)");
  app.add_option(flag::image_size, config.dataset.image_size, "folder datasets: resize to N x N")
      ->check(CLI::NonNegativeNumber);
  app.add_option(flag::cifar100_labels, config.dataset.cifar100_labels,
                 "cifar100: fine (100 classes) or coarse (the 20 superclasses)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fine", "coarse"}));
  auto* out = app.add_option(flag::out, config.out, "output folder");
  if (needs_out) out->required();
  app.add_option(flag::seed, config.seed, "random seed (same seed, same machine: same numbers)")
      ->capture_default_str();
  app.add_option(flag::threads, config.threads, "CPU threads (0: all cores)")
      ->capture_default_str();
  app.add_option(flag::device, config.device, "cpu or cuda[:N]")->capture_default_str();
  app.add_option(flag::precision, config.precision,
                 "auto | fp32 | bf16 (bf16: autocast, convolutions and matrix products in bf16, "
                 "weights, losses and attention maps in fp32; auto: bf16 where a short "
                 "measurement, cached per machine, finds it clearly faster, else fp32; the "
                 "environment variable NAD_PRECISION sets the default)")
      ->capture_default_str()
      ->envname("NAD_PRECISION")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  app.add_option(flag::channels_last, config.channels_last,
                 "keep images, features and convolution weights in N x H x W x C order")
      ->capture_default_str();
  app.add_option(flag::cuda_graphs, config.cuda_graphs,
                 flag::device +
                     " cuda: run each full training batch as one captured CUDA graph "
                     "(about 3x faster training on an H100/H200; false: kernel by kernel)")
      ->capture_default_str();
  app.add_option(flag::eval_batch_size, config.eval_batch_size,
                 "batch size for evaluation (default: 64 on the CPU, 1024 on CUDA)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(flag::dist_timeout, config.dist_timeout,
                 "distributed runs (started with RANK/WORLD_SIZE, e.g. by nad launch): seconds "
                 "to wait for the other ranks before failing")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag(flag::sync_bn, config.sync_bn,
               "distributed runs: BatchNorm uses the batch statistics of all ranks together");
  app.add_flag(flag::quiet, config.quiet, "no progress output");
}

void add_clean_dir_options(CLI::App& app, pipeline::CommonConfig& config) {
  app.get_option(flag::dataset)->required(false);
  app.add_option(flag::clean_dir, config.clean_dir,
                 "the defender's own labelled clean images, DIR/<class>/*.png|jpg (classes by "
                 "DIR/classes.txt, else by numbered folders, else in sorted order); replaces " +
                     flag::dataset +
                     "'s training set and --clean-ratio. Test metrics come from --dataset "
                     "when given, else from a held-out part of DIR");
  app.add_option(flag::clean_dir_test_fraction, config.clean_dir_test_fraction,
                 flag::clean_dir + " without --dataset: share of DIR held out as the test set")
      ->capture_default_str();
}

void add_resume_option(CLI::App& app, pipeline::CommonConfig& config) {
  app.get_option(flag::out)->required(false);
  app.add_option(flag::resume, config.resume,
                 "continue the interrupted run in this folder (its saved state; the options "
                 "must be the run's, or only --resume, --threads and --quiet)");
}

bool is_resumable_command(const std::string& name) {
  if (name == "train" || name == "table" || name == "scan") return true;
  for (const auto& defense : defense_registry()) {
    if (defense.info.name == name) return defense.info.resumable;
  }
  return false;
}

std::vector<std::string> expand_resume(const std::vector<std::string>& args) {
  if (args.empty() || !is_resumable_command(args[0])) return args;
  std::string dir;
  std::vector<std::string> extra;  // --threads N, --quiet
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == flag::resume && i + 1 < args.size()) {
      dir = args[++i];
    } else if (a.rfind(flag::resume + "=", 0) == 0) {
      dir = a.substr(9);
    } else if (a == flag::threads && i + 1 < args.size()) {
      extra.push_back(a);
      extra.push_back(args[++i]);
    } else if (a == flag::quiet) {
      extra.push_back(a);
    } else {
      return args;  // a full command line: parsed as given, checked against config.json
    }
  }
  if (dir.empty()) return args;
  const fs::path file = fs::path(dir) / "state" / "args.json";
  if (!fs::exists(file)) {
    if (pipeline::finished_run(dir)) {
      throw pipeline::RunAlreadyComplete(dir + " finished already (its summary.json is complete)");
    }
    throw UserError(flag::resume + " " + dir + ": no saved command line (" + file.string() +
                    "); give the run's options again with --resume");
  }
  const nlohmann::json saved = io::read_json_or_null(file);
  if (saved.is_null())
    throw UserError(flag::resume + " " + dir + ": " + file.string() + " is damaged");
  if (!saved.is_array() || saved.empty() || !saved[0].is_string() || saved[0] != args[0]) {
    throw UserError(flag::resume + " " + dir + ": " + file.string() + " is not a saved '" +
                    args[0] + "' command line");
  }
  // --threads and --quiet given now replace the saved ones.
  const bool new_threads = std::find(extra.begin(), extra.end(), flag::threads) != extra.end();
  const bool new_quiet = std::find(extra.begin(), extra.end(), flag::quiet) != extra.end();
  std::vector<std::string> out;
  for (size_t i = 0; i < saved.size(); ++i) {
    if (!saved[i].is_string())
      throw UserError(flag::resume + " " + dir + ": " + file.string() + " is damaged");
    const std::string a = saved[i].get<std::string>();
    if (a == flag::threads && new_threads) {
      ++i;
      continue;
    }
    if (a == flag::quiet && new_quiet) continue;
    out.push_back(a);
  }
  out.push_back(flag::resume);
  out.push_back(dir);
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

void add_attack_options(CLI::App& app, attacks::AttackOptions& attack, std::string& label_mode) {
  app.add_option(flag::attack, attack.name,
                 "none | badnets | trojan | blend | cl | sig | refool | wanet (cl, sig and refool "
                 "are clean-label)")
      ->capture_default_str()
      ->check(CLI::IsMember(attacks::attack_names()));
  app.add_option(flag::trigger, attack.trigger, "badnets trigger: grid | square | four-corner")
      ->capture_default_str()
      ->check(CLI::IsMember({"grid", "square", "four-corner"}));
  app.add_option(flag::alpha, attack.alpha, "blend: weight of the pattern")->capture_default_str();
  app.add_option(flag::pattern, attack.pattern_file,
                 "blend: pattern image (default: seeded noise)");
  app.add_option(flag::pattern_seed, attack.pattern_seed,
                 "blend: seed of the noise pattern; wanet: seed of the warping field")
      ->capture_default_str();
  app.add_option(flag::delta, attack.delta, "sig: amplitude of the sinusoid (0-255 scale)")
      ->capture_default_str();
  app.add_option(flag::freq, attack.freq, "sig: periods of the sinusoid across the image width")
      ->capture_default_str();
  app.add_option(flag::grid_k, attack.grid_k, "wanet: side of the random control grid")
      ->capture_default_str();
  app.add_option(flag::strength, attack.strength, "wanet: warping strength s")
      ->capture_default_str();
  app.add_option(flag::cross_ratio, attack.cross_ratio,
                 "wanet: noise-mode images (warp + noise, label kept) per poisoned image")
      ->capture_default_str();
  app.add_option(flag::trigger_file, attack.trigger_file,
                 "trojan: the trigger patch image (nad trojan-trigger makes one; nad train makes "
                 "one when omitted)");
  app.add_option(flag::eps, attack.eps, "cl: PGD L-inf radius on the 0-255 scale (16 means 16/255)")
      ->capture_default_str();
  app.add_option(flag::pgd_steps, attack.pgd_steps, "cl: PGD iterations")->capture_default_str();
  app.add_option(flag::reflections, attack.reflections_dir,
                 "refool: folder of reflection images (default: 200 training images of other "
                 "classes)");
  app.add_option(flag::reflection_select, attack.reflection_select,
                 "refool (train, poison): keep the K reflections most effective on a model "
                 "trained --prep-epochs on data poisoned with the candidates (the folder, else "
                 "1000 training images of other classes); saved in OUT/reflections")
      ->capture_default_str();
  app.add_option(flag::target, attack.target, "target label")->capture_default_str();
  app.add_option_function<double>(
      flag::poison_rate, [&attack](const double& rate) { attack.poison_rate = rate; },
      "fraction of training images poisoned (default 0.1); clean-label attacks (cl, sig, "
      "refool): fraction of the target class (default 0.8)");
  app.add_option(flag::label_mode, label_mode, "all2one | all2all (clean-label: all2one only)")
      ->capture_default_str()
      ->check(CLI::IsMember({"all2one", "all2all"}));
}

void add_attack_prep_options(CLI::App& app, pipeline::AttackPrepConfig& prep) {
  app.add_option(flag::clean_model, prep.clean_model,
                 "trojan and cl: a clean checkpoint to make the trigger / adversarial images with "
                 "(default: train one for --prep-epochs)");
  app.add_option(flag::prep_epochs, prep.epochs,
                 "trojan and cl: epochs of the clean model trained when --clean-model is omitted")
      ->capture_default_str();
  app.add_option(flag::trigger_size, prep.trigger_size, "trojan: side of the generated patch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(flag::trigger_layer, prep.trigger_layer,
                 "trojan: group (0-based) holding the neuron the patch excites (-1: the last)")
      ->capture_default_str();
  app.add_option(flag::trigger_neuron, prep.trigger_neuron,
                 "trojan: channel the patch excites (-1: largest summed outgoing weight)")
      ->capture_default_str();
}

void finish_attack_options(attacks::AttackOptions& attack, const std::string& label_mode) {
  attack.label_mode = attacks::parse_label_mode(label_mode);
}

void finish_defense_options(const CLI::App& app, pipeline::DefenseConfig& config) {
  // `--schedule reference` is the reference's whole recipe, its Cutout included: nad's default
  // noise holes erase more, so keeping them would not reproduce the reference's numbers.
  const bool cutout_given =
      app.count(flag::cutout) + app.count(flag::cutout_length) + app.count(flag::cutout_fill) > 0;
  if (config.schedule == "reference" && !cutout_given) {
    const pipeline::AugmentConfig reference = pipeline::reference_augment();
    config.augment.cutout_holes = reference.cutout_holes;
    config.augment.cutout_length = reference.cutout_length;
    config.augment.cutout_fill = reference.cutout_fill;
  }
}

void add_model_file_options(CLI::App& app, pipeline::ModelFileOptions& options) {
  app.add_option(flag::arch, options.arch,
                 "architecture of the checkpoint (default: what the file says, else guessed "
                 "from the weight names)");
  app.add_option(flag::num_classes, options.num_classes,
                 "classes of the checkpoint (default: what the file says, else the classifier's "
                 "rows)")
      ->check(CLI::PositiveNumber);
  app.add_flag(flag::allow_partial, options.allow_partial,
               "load the weights that match and keep initial values for the rest");
  app.add_option(
      flag::input_norm, options.input_norm,
      "input normalisation of every checkpoint loaded: none | cifar10 | cifar100 | tiny | "
      "mnist | gtsrb | imagenet (BackdoorBench's values) | M1,M2,M3/S1,S2,S3 (default: "
      "what the file says: nad's model.pt records it, a BackdoorBench record's dataset "
      "implies it; else none)");
}

void add_triggered_test_option(CLI::App& app, pipeline::CommonConfig& config) {
  app.add_option(flag::triggered_test, config.triggered_test,
                 "measure ASR and robust accuracy on images someone else triggered, "
                 "DIR/<true label>/*.png|jpg (nad poison's test_triggered/, BackdoorBench's "
                 "bd_test_dataset/), with --target (and --label-mode), instead of --attack");
}

void add_clean_subset_defense_options(CLI::App& app, pipeline::DefenseConfig& config,
                                      std::string& label_mode) {
  add_common_options(app, config.common);
  add_clean_dir_options(app, config.common);
  add_resume_option(app, config.common);
  add_attack_options(app, config.common.attack, label_mode);
  add_triggered_test_option(app, config.common);
  app.add_option(flag::model, config.model,
                 "checkpoint of the (possibly backdoored) model: nad's model.pt, a torch.save "
                 "file or a TorchScript model")
      ->required();
  add_model_file_options(app, config.model_options);
  app.add_option(flag::clean_ratio, config.clean_ratio,
                 "fraction of the clean training set the defender has")
      ->capture_default_str();
  app.add_option(flag::clean_indices, config.clean_indices,
                 "use the clean subset of an earlier run (its clean_indices.txt)");
}

void add_verify_options(CLI::App& app, pipeline::DefenseConfig& config) {
  app.add_flag(flag::verify, config.verify,
               "scan the model before and after with Neural Cleanse (no attack knowledge; "
               "out/scan-before, out/scan-after, and the report's verification section); the "
               "--scan-* options tune it (and --select-by scan's, where there is one) as nad "
               "scan's do");
  add_scan_options(app, config.verify_scan, flag::verify_scan_prefix);
}

void add_defense_options(CLI::App& app, pipeline::DefenseConfig& config, std::string& label_mode) {
  add_clean_subset_defense_options(app, config, label_mode);
  app.add_option(flag::epochs, config.epochs, "finetuning epochs")->capture_default_str();
  app.add_option(flag::patience, config.patience,
                 "stop after this many epochs without a better hold-out accuracy and keep the "
                 "best epoch (0: off; holds out --validation-fraction)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option(flag::batch_size, config.batch_size, "batch size")->capture_default_str();
  app.add_option(flag::lr, config.lr,
                 "learning rate, or 'auto': the largest of --lr-grid whose held-out clean accuracy "
                 "stays within --lr-tolerance points (plus --lr-noise-margin standard errors) of "
                 "the best finetuned run")
      ->capture_default_str();
  app.add_option(flag::lr_grid, config.lr_search.grid, "candidate rates for --lr auto")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option(flag::lr_tolerance, config.lr_search.tolerance,
                 "accuracy points a larger rate may lose on the held-out data")
      ->capture_default_str();
  app.add_option(flag::lr_noise_margin, config.lr_search.noise_margin,
                 "standard errors of the paired hold-out difference a rate's loss may exceed " +
                     flag::lr_tolerance + " by, so chance does not decide (0: the bare tolerance)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option(flag::select_by, config.select_by,
                 "accuracy | scan: which of the rates --lr auto accepts is kept: the largest, "
                 "or the one whose model the reversed trigger of a Neural Cleanse scan of the "
                 "model before (no attack knowledge; the --scan-* options) moves least, ties to "
                 "the larger; scan needs at least 100 held-out images")
      ->capture_default_str()
      ->check(CLI::IsMember({"accuracy", "scan"}));
  app.add_option(flag::validation_fraction, config.validation_fraction,
                 "share of the clean subset held out by --lr auto and --patience")
      ->capture_default_str();
  app.add_option(
         flag::schedule, config.schedule,
         "constant | step | cosine | reference (the paper code: lr 0.1 for 2 epochs, then 0.01, "
         "with its Cutout: one zero-filled hole of side 3, unless --cutout* are given)")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "step", "cosine", "reference"}));
  app.add_option(flag::momentum, config.momentum)->capture_default_str();
  app.add_option(flag::weight_decay, config.weight_decay)->capture_default_str();
  add_augment_options(app, config.augment);
  add_verify_options(app, config);
}

void add_scan_options(CLI::App& app, pipeline::ScanOptions& options, const std::string& prefix) {
  options.option_prefix = prefix;
  defenses::NeuralCleanseOptions& nc = options.nc;
  app.add_option(prefix + "epochs", nc.epochs, "Neural Cleanse: epochs at most per class")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(prefix + "steps-per-epoch", nc.steps_per_epoch,
                 "Neural Cleanse: Adam steps per epoch (lambda and the early stop look at "
                 "each epoch)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(prefix + "batch-size", nc.batch_size,
                 "Neural Cleanse: clean images per class and step (all classes in one batch)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(prefix + "lr", nc.lr, "Neural Cleanse: Adam's learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(prefix + "init-cost", nc.init_cost,
                 "Neural Cleanse: lambda, the weight of the mask's L1 norm, once the trigger "
                 "has succeeded for --patience epochs (0 until then, as in the paper's code)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(prefix + "cost-multiplier", nc.cost_multiplier,
                 "Neural Cleanse: lambda is multiplied by this after --patience epochs of "
                 "success, divided by its 1.5th power after as many of failure")
      ->capture_default_str();
  app.add_option(prefix + "patience", nc.patience, "Neural Cleanse: epochs before lambda moves")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(prefix + "early-stop-patience", nc.early_stop_patience,
                 "Neural Cleanse: a class stops after this many epochs without its best norm "
                 "shrinking by 1% (once lambda has moved both ways)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(prefix + "success-threshold", nc.success_threshold,
                 "Neural Cleanse: attack success (fraction) a reversed trigger must reach, also "
                 "on the held-out images")
      ->capture_default_str();
  app.add_option(prefix + "threshold", options.threshold,
                 "anomaly index above which a class is flagged as a backdoor target")
      ->capture_default_str();
  app.add_option(prefix + "holdout-fraction", options.holdout_fraction,
                 "share of the clean images held out to check each reversed trigger")
      ->capture_default_str();
  app.add_option(prefix + "anomaly-scale", options.anomaly_scale,
                 "the outlier test on the norms (linear, the paper's) or on their logarithms "
                 "(log); both indices are reported, this one gives the verdict [linear]")
      ->transform(CLI::CheckedTransformer(std::map<std::string, defenses::AnomalyScale>{
          {"linear", defenses::AnomalyScale::kLinear}, {"log", defenses::AnomalyScale::kLog}}));
}

void add_attention_map_options(CLI::App& app, double& power, std::string& attention) {
  app.add_option(flag::power, power, "p in the attention map sum |F|^p")->capture_default_str();
  app.add_option(flag::attention, attention, "sum-p | sum | mean-p")
      ->capture_default_str()
      ->check(CLI::IsMember({"sum-p", "sum", "mean-p"}));
}

void add_augment_options(CLI::App& app, pipeline::AugmentConfig& config) {
  app.add_option(flag::crop_padding, config.crop_padding, "random-crop padding (0: off)")
      ->capture_default_str();
  app.add_option(flag::flip, config.horizontal_flip,
                 "horizontal flips (default: where natural for the dataset)");
  app.add_option(flag::cutout, config.cutout_holes, "Cutout holes (0: off)")->capture_default_str();
  app.add_option(flag::cutout_length, config.cutout_length, "Cutout hole side")
      ->capture_default_str();
  app.add_option(flag::cutout_fill, config.cutout_fill,
                 "what fills a Cutout hole: zero (the original Cutout) or noise (random pixels)")
      ->capture_default_str()
      ->check(CLI::IsMember({"zero", "noise"}));
}

}  // namespace nad::cli
