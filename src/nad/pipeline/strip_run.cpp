#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>

#include "nad/data/readers.h"
#include "nad/data/subset.h"
#include "nad/defenses/strip.h"
#include "nad/io/figure.h"
#include "nad/io/json.h"
#include "nad/io/png.h"
#include "nad/models/checkpoint.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/format.h"
#include "nad/util/sha256.h"
#include "nad/util/threads.h"

namespace nad::pipeline {

namespace fs = std::filesystem;

namespace {

// strip.json's "format": a gate refuses files of another layout. Version 1 had no "method"
// and always meant the half-and-half blend and the entropy of the mean softmax.
constexpr const char* kFormat = "nad-strip-2";
constexpr const char* kFormatV1 = "nad-strip-1";

std::string sha256_of(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kCPU).contiguous();
  return "sha256:" + sha256_hex(t.data_ptr(), static_cast<size_t>(t.numel() * t.element_size()));
}

// The overlays (N x H x W x C uint8) as one image: a grid of ceil(sqrt(N)) columns, unused
// cells black. Laid out and read back by reshapes alone.
int64_t grid_columns(int64_t count) {
  return static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(count))));
}

torch::Tensor overlay_grid(const torch::Tensor& overlays) {
  const int64_t n = overlays.size(0), h = overlays.size(1), w = overlays.size(2),
                c = overlays.size(3);
  const int64_t columns = grid_columns(n), rows = (n + columns - 1) / columns;
  torch::Tensor cells = torch::zeros({rows * columns, h, w, c}, torch::kUInt8);
  cells.slice(0, 0, n).copy_(overlays);
  return cells.view({rows, columns, h, w, c})
      .permute({0, 2, 1, 3, 4})
      .reshape({rows * h, columns * w, c});
}

torch::Tensor overlays_from_grid(const torch::Tensor& grid, int64_t count, int64_t h, int64_t w) {
  const int64_t columns = grid_columns(count), rows = (count + columns - 1) / columns,
                c = grid.size(2);
  return grid.view({rows, h, columns, w, c})
      .permute({0, 2, 1, 3, 4})
      .reshape({rows * columns, h, w, c})
      .slice(0, 0, count)
      .contiguous();
}

nlohmann::json model_record(const std::string& file, const models::LoadedModel& loaded) {
  const models::ModelSpec& spec = loaded.spec;
  return {{"file", file},
          {"arch", spec.arch},
          {"num_classes", spec.num_classes},
          {"input_shape", {spec.in_channels, spec.height, spec.width}},
          {"fingerprint", models::weights_fingerprint(loaded.model)}};
}

std::string describe_model(const nlohmann::json& m) {
  std::ostringstream out;
  const auto& shape = m.at("input_shape");
  out << m.at("arch").get<std::string>() << ", " << m.at("num_classes").get<int64_t>()
      << " classes, " << shape.at(0).get<int64_t>() << "x" << shape.at(1).get<int64_t>() << "x"
      << shape.at(2).get<int64_t>() << " inputs, weights "
      << m.at("fingerprint").get<std::string>();
  return out.str();
}

double mean_or_zero(const torch::Tensor& values) {
  return values.numel() == 0 ? 0.0 : values.to(torch::kDouble).mean().item<double>();
}

// `count` rows of `n` drawn with the seed and sorted, or all of them for count 0.
torch::Tensor sample_rows(int64_t n, int64_t count, uint64_t seed) {
  if (count <= 0 || count >= n) return torch::arange(n, torch::kLong);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return std::get<0>(torch::randperm(n, generator, torch::kLong).slice(0, 0, count).sort());
}

nlohmann::json config_json(const StripConfig& config, const std::string& mode) {
  return {{"command", "strip"},
          {"mode", mode},
          {"common", config.common.to_json()},
          {"model", config.model},
          {"model_options", config.model_options.to_json()},
          {"clean_ratio", config.clean_ratio},
          {"overlays", config.overlays},
          {"superimpose", config.method.superimpose_name()},
          {"entropy", config.method.entropy_name()},
          {"frr", config.frr},
          {"test_images", config.test_images},
          {"threshold_file", config.threshold_file},
          {"images", config.images}};
}

void write_histogram_png(const fs::path& file, const torch::Tensor& clean,
                         const torch::Tensor& triggered, double threshold, int64_t num_classes,
                         const std::string& title) {
  auto values = [](const torch::Tensor& t) {
    const torch::Tensor d = t.to(torch::kDouble).contiguous();
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  };
  io::Histogram histogram;
  histogram.title = title;
  histogram.x_label = "STRIP entropy (bits; at most log2 of the classes)";
  histogram.x_max = std::log2(static_cast<double>(std::max<int64_t>(2, num_classes)));
  histogram.series.push_back({"clean", values(clean), {0.12, 0.40, 0.80}});
  if (triggered.defined())
    histogram.series.push_back({"triggered", values(triggered), {0.85, 0.15, 0.10}});
  histogram.markers.push_back({"threshold " + format_double(threshold, "%.3f"), threshold});
  io::write_histogram(file, histogram);
}

void check_strip_options(const StripConfig& config) {
  check_common_options(config.common);
  check_model_file(config.model, flag::model);
  if (config.overlays < 1) throw UserError(flag::overlays + " must be >= 1");
  if (!(config.frr >= 0 && config.frr < 1)) {
    throw UserError(flag::frr + " must be in [0, 1), not " + std::to_string(config.frr));
  }
  if (!(config.clean_ratio > 0 && config.clean_ratio <= 1)) {
    throw UserError(flag::clean_ratio + " must be in (0, 1], not " +
                    std::to_string(config.clean_ratio));
  }
  if (config.test_images < 0) throw UserError(flag::test_images + " must be >= 0 (0: all)");
}

nlohmann::json calibrate(const StripConfig& config) {
  if (config.common.dataset.name.empty() && config.common.clean_dir.empty()) {
    throw UserError(flag::dataset + " or " + flag::clean_dir +
                    " is required to calibrate a threshold (or give " + flag::threshold_file +
                    " and " + flag::images + " to flag images)");
  }
  check_strip_options(config);
  RunContext context = open_run(config.common);
  models::LoadedModel loaded =
      load_model_for(config.model, context, flag::model, config.model_options);
  const data::Dataset& train = context.data.train;
  const data::Dataset& test = context.data.test;
  const uint64_t seed = config.common.seed;

  // The overlays: --overlays images of the defender's clean subset (with --clean-dir, the
  // folder's images not held out as the test set), drawn with the seed.
  const torch::Tensor clean_rows =
      context.from_clean_dir ? torch::arange(train.size(), torch::kLong)
                             : data::stratified_subset(train.labels, config.clean_ratio, seed);
  if (clean_rows.size(0) == 0) {
    throw UserError(flag::clean_ratio + " " + format_double(config.clean_ratio, "%g") +
                    " leaves no clean images of the " + std::to_string(train.size()) +
                    " training images; raise it");
  }
  if (clean_rows.size(0) < config.overlays) {
    const std::string source =
        context.from_clean_dir ? flag::clean_dir + " " + config.common.clean_dir
                               : flag::clean_ratio + " " + format_double(config.clean_ratio, "%g");
    throw UserError(
        source + " gives " + std::to_string(clean_rows.size(0)) + " clean images, fewer than " +
        flag::overlays + " " + std::to_string(config.overlays) + "; " +
        (context.from_clean_dir ? "add images" : std::string("raise " + flag::clean_ratio)) +
        " or lower " + flag::overlays);
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed + 2);
  const torch::Tensor picked =
      torch::randperm(clean_rows.size(0), generator, torch::kLong).slice(0, 0, config.overlays);
  const torch::Tensor overlay_rows = clean_rows.index_select(0, picked);
  const torch::Tensor overlays = train.images.index_select(0, overlay_rows).contiguous();
  context.log("STRIP: " + std::to_string(config.overlays) + " overlays from " +
              std::to_string(clean_rows.size(0)) + " clean training images");

  const torch::Tensor device_overlays = overlays.to(context.device);
  auto entropy_of = [&](const torch::Tensor& images) {
    return defenses::strip_entropy(loaded.model, images.to(context.device), device_overlays,
                                   context.eval_batch_size, config.method);
  };
  const torch::Tensor test_rows = sample_rows(test.size(), config.test_images, seed + 1);
  const torch::Tensor clean_images = test.images.index_select(0, test_rows);
  const torch::Tensor clean_entropy = entropy_of(clean_images);
  const double threshold = defenses::strip_threshold(clean_entropy, config.frr);
  const double frr = defenses::percent_flagged(clean_entropy, threshold);
  context.log("clean: " + std::to_string(clean_entropy.numel()) + " test images, mean entropy " +
              format_double(mean_or_zero(clean_entropy), "%.4f") + " bits; threshold " +
              format_double(threshold, "%.4f") + " flags " + format_double(frr, "%.2f") + "%");

  // Triggered test images: the rows ASR is measured on (not already of the target class).
  torch::Tensor triggered_rows, triggered_images, triggered_entropy;
  std::optional<double> far;
  if (context.attack) {
    const attacks::TriggeredSet set = context.attack->triggered_test_set(test);
    const torch::Tensor local = sample_rows(set.data.size(), config.test_images, seed + 3);
    triggered_images = set.data.images.index_select(0, local);
    // The test rows they came from: all-to-one drops the target class's rows.
    const torch::Tensor source =
        context.attack->options().label_mode == attacks::LabelMode::kAllToOne
            ? torch::nonzero(test.labels != context.attack->options().target).flatten()
            : torch::arange(test.size(), torch::kLong);
    triggered_rows = source.index_select(0, local);
    triggered_entropy = entropy_of(triggered_images);
    far = defenses::percent_accepted(triggered_entropy, threshold);
    context.log("triggered: " + std::to_string(triggered_entropy.numel()) +
                " test images, mean entropy " +
                format_double(mean_or_zero(triggered_entropy), "%.4f") + " bits; FAR " +
                format_double(*far, "%.2f") + "%");
  }
  const train::Metrics metrics = (*context.evaluator)(loaded.model);

  // Every measured input, for audit and other thresholds.
  std::ostringstream csv;
  csv << "set,test_row,entropy,flagged,predicted\n";
  auto add_rows = [&](const char* set, const torch::Tensor& rows, const torch::Tensor& images,
                      const torch::Tensor& entropy) {
    const torch::Tensor predicted =
        train::predict(loaded.model, images.to(context.device), context.eval_batch_size).cpu();
    const torch::Tensor flags = defenses::strip_flags(entropy, threshold);
    const auto row = rows.accessor<int64_t, 1>();
    const auto value = entropy.accessor<double, 1>();
    const auto flag = flags.accessor<bool, 1>();
    const auto label = predicted.accessor<int64_t, 1>();
    for (int64_t i = 0; i < rows.size(0); ++i) {
      csv << set << ',' << row[i] << ',' << format_double(value[i], "%.6f") << ',' << flag[i] << ','
          << label[i] << '\n';
    }
  };
  add_rows("clean", test_rows, clean_images, clean_entropy);
  if (far) add_rows("triggered", triggered_rows, triggered_images, triggered_entropy);
  write_text_atomic(context.out / "entropies.csv", csv.str());

  // The overlays travel as a lossless PNG beside strip.json rather than as dataset indices to
  // re-read: the gate then needs neither the dataset nor its folder, and a moved or changed
  // dataset cannot silently change them (their pixels are fingerprinted in strip.json). The
  // training rows are recorded too, for audit. Written before strip.json, which names it.
  io::write_png(context.out / "overlays.png", overlay_grid(overlays));
  nlohmann::json calibration = {{"clean_test_images", clean_entropy.numel()},
                                {"clean_entropy_mean", mean_or_zero(clean_entropy)},
                                {"frr_percent", frr},
                                {"attack", config.common.attack.to_json()}};
  if (far) {
    calibration["triggered_test_images"] = triggered_entropy.numel();
    calibration["triggered_entropy_mean"] = mean_or_zero(triggered_entropy);
    calibration["far_percent"] = *far;
  }
  const nlohmann::json model = model_record(config.model, loaded);
  const nlohmann::json strip = {
      {"format", kFormat},
      {"method",
       {{"superimpose", config.method.superimpose_name()},
        {"entropy", config.method.entropy_name()},
        {"definition", config.method.definition()}}},
      {"threshold", threshold},
      {"frr", config.frr},
      {"model", model},
      {"overlays",
       {{"file", "overlays.png"},
        {"count", config.overlays},
        {"height", overlays.size(1)},
        {"width", overlays.size(2)},
        {"channels", overlays.size(3)},
        {"fingerprint", sha256_of(overlays)},
        {"dataset", context.data.name},
        {"data_dir", config.common.dataset.data_dir},
        {"clean_ratio", config.clean_ratio},
        {"seed", seed},
        {"train_indices",
         std::vector<int64_t>(overlay_rows.data_ptr<int64_t>(),
                              overlay_rows.data_ptr<int64_t>() + overlay_rows.numel())}}},
      {"calibration", calibration}};
  io::write_json(context.out / "strip.json", strip);
  const bool figure = io::figures_available();
  if (figure) {
    write_histogram_png(context.out / "entropy.png", clean_entropy,
                        far ? triggered_entropy : torch::Tensor(), threshold,
                        loaded.spec.num_classes,
                        "STRIP entropy of " + context.data.name + " test images (" +
                            std::to_string(config.overlays) + " overlays)");
  }

  nlohmann::json summary = {
      {"mode", "calibrate"},
      {"threshold", threshold},
      {"frr", config.frr},
      {"frr_percent", frr},
      {"far_percent", far ? nlohmann::json(*far) : nlohmann::json(nullptr)},
      {"clean_entropy_mean", mean_or_zero(clean_entropy)},
      {"triggered_entropy_mean",
       far ? nlohmann::json(mean_or_zero(triggered_entropy)) : nlohmann::json(nullptr)},
      {"clean_test_images", clean_entropy.numel()},
      {"triggered_test_images", far ? triggered_entropy.numel() : 0},
      {"metrics", metrics.to_json()},
      {"model", model},
      {"threshold_file", "strip.json"},
      {"figure", figure ? nlohmann::json("entropy.png") : nlohmann::json(nullptr)},
      {"seconds", context.seconds()}};
  std::ostringstream report;
  report << "# nad strip\n\nSTRIP on `" << config.model << "` (" << loaded.spec.arch << ", "
         << metrics.summary() << ") with " << config.overlays << " overlays from "
         << (context.from_clean_dir
                 ? "the defender's images (" + flag::clean_dir + " " + config.common.clean_dir + ")"
                 : context.data.name + "'s clean training images (" + flag::clean_ratio + " " +
                       format_double(config.clean_ratio, "%g") + ")")
         << ", seed " << seed << "; threshold and rates on the " << context.test_source
         << ". Entropy: " << config.method.definition() << ".\n\n"
         << "| set | images | mean entropy (bits) | flagged |\n|---|---|---|---|\n"
         << "| clean test | " << clean_entropy.numel() << " | "
         << format_double(mean_or_zero(clean_entropy), "%.4f") << " | "
         << format_double(frr, "%.2f") << "% (FRR) |\n";
  if (far) {
    report << "| triggered test (" << config.common.attack.name << ") | "
           << triggered_entropy.numel() << " | "
           << format_double(mean_or_zero(triggered_entropy), "%.4f") << " | "
           << format_double(100 - *far, "%.2f") << "% (FAR " << format_double(*far, "%.2f")
           << "%) |\n";
  }
  report << "\nThreshold " << format_double(threshold, "%.6f") << " bits, the clean entropies' "
         << config.frr
         << " quantile (" + flag::frr + "); `strip.json` and `overlays.png` let `nad strip "
         << flag::threshold_file + "` flag other images with this model.\n";
  if (figure) report << "\n![entropy histograms](entropy.png)\n";
  write_run_files(context, config_json(config, "calibrate"), summary, {}, report.str());
  return summary;
}

// A field of strip.json, or a UserError naming the file and the field.
template <typename T>
T field(const nlohmann::json& json, const nlohmann::json::json_pointer& pointer,
        const std::string& file) {
  try {
    return json.at(pointer).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw UserError(flag::threshold_file + " " + file + ": field '" + pointer.to_string() +
                    "' is missing or malformed");
  }
}

// The images of a folder (not its subfolders), by file name, as one N x H x W x C batch.
std::pair<std::vector<std::string>, torch::Tensor> read_image_dir(const std::string& dir,
                                                                  int64_t channels, int64_t height,
                                                                  int64_t width) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UserError(flag::images + " " + dir + ": no such folder");
  std::vector<fs::path> files;
  int64_t skipped = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".ppm") {
      files.push_back(entry.path());
    } else {
      ++skipped;
    }
  }
  if (ec)
    throw UserError(flag::images + " " + dir + ": cannot list the folder (" + ec.message() + ")");
  if (files.empty()) {
    throw UserError(flag::images + " " + dir + " holds no images (.png, .jpg, .jpeg, .bmp, .ppm)");
  }
  if (skipped > 0) {
    print_warnings({flag::images + " " + dir + ": skipped " + std::to_string(skipped) +
                    " file(s) that are not images"});
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> names;
  std::vector<torch::Tensor> images;
  for (const auto& file : files) {
    torch::Tensor image = data::read_image(file, static_cast<int>(channels));
    if (image.size(0) != height || image.size(1) != width) {
      throw UserError("'" + file.string() + "' is " + std::to_string(image.size(1)) + "x" +
                      std::to_string(image.size(0)) + " pixels; the model takes " +
                      std::to_string(width) + "x" + std::to_string(height));
    }
    names.push_back(file.filename().string());
    images.push_back(image);
  }
  return {names, torch::stack(images)};
}

nlohmann::json flag_images(const StripConfig& config) {
  if (config.threshold_file.empty())
    throw UserError(flag::images + " needs " + flag::threshold_file);
  if (config.images.empty())
    throw UserError(flag::threshold_file + " needs " + flag::images + " (a folder)");
  if (!config.common.dataset.name.empty()) {
    throw UserError(flag::dataset + " is for calibration; with " + flag::threshold_file +
                    " the overlays come from the threshold file's folder");
  }
  if (config.common.attack.name != "none") {
    throw UserError(flag::attack + " is for calibration (it measures FAR); not used with " +
                    flag::threshold_file);
  }
  if (!config.common.clean_dir.empty()) {
    throw UserError(flag::clean_dir + " is for calibration; with " + flag::threshold_file +
                    " the overlays come from the threshold file's folder");
  }
  check_common_options(config.common);
  check_model_file(config.model, flag::model);
  if (config.common.out.empty()) throw UserError(flag::out + " is required");
  const std::string& file = config.threshold_file;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw UserError(flag::threshold_file + " " + file + ": no such file");
  }
  const nlohmann::json strip = io::read_json_or_null(file);
  if (!strip.is_object()) throw UserError(flag::threshold_file + " " + file + " is not valid JSON");
  const std::string format = strip.value("format", std::string());
  if (format != kFormat && format != kFormatV1) {
    throw UserError(flag::threshold_file + " " + file +
                    " is not a strip.json written by nad strip (" + "its format is not " + kFormat +
                    ")");
  }
  using Pointer = nlohmann::json::json_pointer;
  // The entropy exactly as calibrated: the threshold means nothing under another definition.
  defenses::StripMethod method;
  if (format == kFormatV1) {
    method.superimpose = defenses::Superimpose::kBlend;
    method.entropy = defenses::StripEntropy::kEntropyOfMean;
  } else {
    method.superimpose =
        defenses::parse_superimpose(field<std::string>(strip, Pointer("/method/superimpose"), file),
                                    flag::threshold_file + " " + file + ": /method/superimpose");
    method.entropy =
        defenses::parse_strip_entropy(field<std::string>(strip, Pointer("/method/entropy"), file),
                                      flag::threshold_file + " " + file + ": /method/entropy");
  }
  const double threshold = field<double>(strip, Pointer("/threshold"), file);
  const nlohmann::json recorded = field<nlohmann::json>(strip, Pointer("/model"), file);
  const auto shape = field<std::vector<int64_t>>(strip, Pointer("/model/input_shape"), file);
  const auto num_classes = field<int64_t>(strip, Pointer("/model/num_classes"), file);
  const auto recorded_arch = field<std::string>(strip, Pointer("/model/arch"), file);
  const auto recorded_weights = field<std::string>(strip, Pointer("/model/fingerprint"), file);
  const auto overlay_file = field<std::string>(strip, Pointer("/overlays/file"), file);
  const auto count = field<int64_t>(strip, Pointer("/overlays/count"), file);
  const auto overlay_fingerprint =
      field<std::string>(strip, Pointer("/overlays/fingerprint"), file);
  if (shape.size() != 3 || count < 1 || num_classes < 1) {
    throw UserError(flag::threshold_file + " " + file +
                    ": malformed model input shape or overlay count");
  }
  // Writing into the calibration folder would replace its config.json, summary.json, report.
  const fs::path out = config.common.out;
  const fs::path threshold_dir =
      fs::path(file).parent_path().empty() ? fs::path(".") : fs::path(file).parent_path();
  if (fs::exists(out, ec) && fs::equivalent(out, threshold_dir, ec)) {
    throw UserError(flag::out + " " + config.common.out + " is the folder of " +
                    flag::threshold_file + " " + file +
                    "; writing there would replace the calibration run's files");
  }

  // The compute settings as open_run sets them, without a dataset; the folder is made once
  // every input has been checked, so a refused run leaves nothing behind.
  RunContext context;
  context.quiet = config.common.quiet;
  context.out = out;
  set_threads(config.common.threads);
  context.device = parse_device(config.common.device);
  context.eval_batch_size = config.common.eval_batch_size > 0
                                ? config.common.eval_batch_size
                                : train::default_eval_batch_size(context.device);
  configure_compute(config.common, context);

  models::LoadOptions load = load_options(config.model_options);
  load.input_shape = shape;
  load.device = context.device;
  models::LoadedModel loaded = models::load_checkpoint(config.model, load);
  context.log(flag::model + " " + config.model + ": " + loaded.description);
  print_warnings(loaded.warnings);
  const nlohmann::json given = model_record(config.model, loaded);
  const models::ModelSpec& spec = loaded.spec;
  const std::vector<int64_t> given_shape{spec.in_channels, spec.height, spec.width};
  const char* differs = spec.arch != recorded_arch        ? "architectures"
                        : spec.num_classes != num_classes ? "class counts"
                        : given_shape != shape            ? "input shapes"
                        : given.at("fingerprint").get<std::string>() != recorded_weights ? "weights"
                                                                                         : nullptr;
  if (differs != nullptr) {
    throw UserError(flag::threshold_file + " " + file + " was calibrated on another model (the " +
                    differs + " differ): it records " + recorded.value("file", std::string("?")) +
                    " (" + describe_model(recorded) + "), but " + flag::model + " " + config.model +
                    " is " + describe_model(given));
  }

  // The overlays from the PNG beside the threshold file, checked against its fingerprint.
  const fs::path overlay_path = fs::path(file).parent_path() / overlay_file;
  if (!fs::is_regular_file(overlay_path, ec)) {
    throw UserError(flag::threshold_file + " " + file + ": its overlays " + overlay_path.string() +
                    " are missing (keep overlays.png beside strip.json)");
  }
  const int64_t c = shape[0], h = shape[1], w = shape[2];
  const torch::Tensor grid = data::read_image(overlay_path, static_cast<int>(c));
  const int64_t columns = grid_columns(count), rows = (count + columns - 1) / columns;
  if (grid.size(0) != rows * h || grid.size(1) != columns * w) {
    throw UserError("'" + overlay_path.string() + "' is not the grid of " + std::to_string(count) +
                    " overlays that " + file + " describes");
  }
  const torch::Tensor overlays = overlays_from_grid(grid, count, h, w);
  if (sha256_of(overlays) != overlay_fingerprint) {
    throw UserError("'" + overlay_path.string() + "' does not match the overlay fingerprint in " +
                    file + " (changed since calibration?)");
  }

  auto [names, images] = read_image_dir(config.images, c, h, w);
  context.log("STRIP: checking " + std::to_string(names.size()) + " images of " + config.images +
              " against threshold " + format_double(threshold, "%.4f"));
  ensure_directory(context.out);
  const torch::Tensor device_images = images.to(context.device);
  const torch::Tensor entropy = defenses::strip_entropy(
      loaded.model, device_images, overlays.to(context.device), context.eval_batch_size, method);
  const torch::Tensor flags = defenses::strip_flags(entropy, threshold);
  const torch::Tensor predicted =
      train::predict(loaded.model, device_images, context.eval_batch_size).cpu();

  std::ostringstream csv;
  csv << "file,entropy,flagged,predicted\n";
  std::vector<std::string> flagged;
  const auto value = entropy.accessor<double, 1>();
  const auto flag = flags.accessor<bool, 1>();
  const auto label = predicted.accessor<int64_t, 1>();
  for (size_t i = 0; i < names.size(); ++i) {
    const int64_t row = static_cast<int64_t>(i);
    if (flag[row]) flagged.push_back(names[i]);
    csv << io::csv_field(names[i]) << ',' << format_double(value[row], "%.6f") << ',' << flag[row]
        << ',' << label[row] << '\n';
  }
  write_text_atomic(context.out / "flags.csv", csv.str());

  nlohmann::json summary = {{"mode", "flag"},
                            {"threshold_file", file},
                            {"threshold", threshold},
                            {"superimpose", method.superimpose_name()},
                            {"entropy", method.entropy_name()},
                            {"images", names.size()},
                            {"flagged", flagged.size()},
                            {"flagged_files", flagged},
                            {"csv", "flags.csv"},
                            {"model", given},
                            {"seconds", context.seconds()}};
  std::ostringstream report;
  report << "# nad strip\n\nChecked " << names.size() << " images of `" << config.images
         << "` with `" << config.model << "` against the STRIP threshold "
         << format_double(threshold, "%.6f") << " bits of `" << file << "` (" << count
         << " overlays): " << flagged.size() << " flagged as triggered (entropy below the "
         << "threshold). Per image: `flags.csv`.\n";
  if (!flagged.empty()) {
    report << "\nFlagged:\n\n";
    const size_t shown = std::min<size_t>(flagged.size(), 50);
    for (size_t i = 0; i < shown; ++i) report << "- `" << flagged[i] << "`\n";
    if (flagged.size() > shown) report << "- ... (" << flagged.size() << " in all)\n";
  }
  write_run_files(context, config_json(config, "flag"), summary, {}, report.str());
  context.log(std::to_string(flagged.size()) + " of " + std::to_string(names.size()) +
              " images flagged; " + (context.out / "flags.csv").string());
  return summary;
}

}  // namespace

nlohmann::json run_strip(const StripConfig& config) {
  if (!config.threshold_file.empty() || !config.images.empty()) return flag_images(config);
  return calibrate(config);
}

}  // namespace nad::pipeline
