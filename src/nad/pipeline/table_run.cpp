// `nad table`: the paper's comparison (Table 1) as one resumable command.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "nad/data/dataset.h"
#include "nad/defenses/clean_subset.h"
#include "nad/io/figure.h"
#include "nad/io/json.h"
#include "nad/pipeline/child_command.h"
#include "nad/pipeline/context.h"
#include "nad/pipeline/runs.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "nad/util/flags.h"
#include "nad/util/stop.h"

namespace nad::pipeline {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct DatasetSpec {
  std::string name, data_dir;
  int64_t target = 0;
  int image_size = 0;
  std::string cifar100_labels = "fine";
  std::vector<std::string> options, train;  // to every run of the dataset; to training only
};

struct AttackSpec {
  std::string name;
  std::vector<std::string> options, train;  // to every run (they define ASR); to training only
};

struct DefenseSpec {
  std::string name;     // the column, e.g. "NAD"
  std::string command;  // a registered defense: finetune, prune, mcr, erase, ...
  std::vector<std::string> options;
  bool uses_clean_data = true;
  bool finetunes = true;  // takes defense_options and the shared rate
};

struct TableSpec {
  std::string name;
  uint64_t seed = 0;
  double clean_ratio = 0.05;
  std::vector<std::string> options, train, defense_options;
  std::vector<DatasetSpec> datasets;
  std::vector<AttackSpec> attacks;
  std::vector<DefenseSpec> defenses;
  std::map<std::string, std::string> models;  // "dataset/attack" -> a backdoored checkpoint
  std::map<std::string, std::string> triggered_tests;  // "dataset/attack" -> --triggered-test
  // One learning rate per backdoored model: the finetune defense's --lr auto choice, passed as
  // --lr to the row's other defenses that do not set one, so that the table compares defenses
  // rather than the rates their own searches chose.
  bool shared_lr = false;
  std::optional<size_t> lr_source;  // with shared_lr: the first finetune defense that searches
};

bool sets_lr(const std::vector<std::string>& options) {
  return std::any_of(options.begin(), options.end(), [](const std::string& o) {
    return o == flag::lr || o.rfind(flag::lr + "=", 0) == 0;
  });
}

// Whether `defense` runs `--lr auto` (no --lr in its own options or the shared ones).
bool searches_lr(const TableSpec& spec, const DefenseSpec& defense) {
  return !sets_lr(defense.options) && !sets_lr(spec.defense_options);
}

// Options as a string split on white space, or a list of strings.
std::vector<std::string> option_list(const json& value, const std::string& where) {
  std::vector<std::string> out;
  if (value.is_null()) return out;
  if (value.is_string()) {
    std::istringstream in(value.get<std::string>());
    std::string word;
    while (in >> word) out.push_back(word);
    return out;
  }
  if (value.is_array()) {
    for (const auto& v : value) {
      if (!v.is_string()) throw UserError(where + " must hold strings");
      out.push_back(v.get<std::string>());
    }
    return out;
  }
  throw UserError(where + " must be a string of options or a list of strings");
}

std::string string_of(const json& object, const char* key, const std::string& where,
                      const std::string& fallback = "") {
  if (!object.contains(key)) return fallback;
  if (!object[key].is_string()) throw UserError(where + "." + key + " must be a string");
  return object[key].get<std::string>();
}

TableSpec parse_spec(const json& j, const std::string& file, const std::string& data_dir,
                     const std::vector<DefenseInfo>& known_defenses) {
  if (!j.is_object()) throw UserError(file + ": the experiment must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    static const std::vector<std::string> known = {
        "name",   "description",     "seed",     "clean_ratio", "options",
        "train",  "defense_options", "datasets", "attacks",     "defenses",
        "models", "shared_lr"};
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      throw UserError(file + ": unknown key '" + key + "'");
    }
  }
  TableSpec spec;
  spec.name = string_of(j, "name", file, fs::path(file).stem().string());
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned()) throw UserError(file + ": seed must be a whole number");
    spec.seed = j["seed"].get<uint64_t>();
  }
  if (j.contains("clean_ratio")) {
    if (!j["clean_ratio"].is_number()) throw UserError(file + ": clean_ratio must be a number");
    spec.clean_ratio = j["clean_ratio"].get<double>();
    if (!(spec.clean_ratio > 0 && spec.clean_ratio <= 1)) {
      throw UserError(file + ": clean_ratio must be in (0, 1]");
    }
  }
  spec.options = option_list(j.value("options", json()), file + ": options");
  spec.train = option_list(j.value("train", json()), file + ": train");
  spec.defense_options =
      option_list(j.value("defense_options", json()), file + ": defense_options");

  auto list = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_array() || j[key].empty()) {
      throw UserError(file + ": '" + key + "' must be a non-empty list");
    }
    return j[key];
  };
  for (const auto& d : list("datasets")) {
    const std::string where = file + ": datasets[]";
    DatasetSpec ds;
    if (d.is_string()) {
      ds.name = d.get<std::string>();
    } else if (d.is_object()) {
      ds.name = string_of(d, "dataset", where);
      ds.data_dir = string_of(d, "data_dir", where);
      if (d.contains("target")) ds.target = d["target"].get<int64_t>();
      if (d.contains("image_size")) ds.image_size = d["image_size"].get<int>();
      ds.cifar100_labels = string_of(d, "cifar100_labels", where, ds.cifar100_labels);
      if (ds.cifar100_labels != "fine" && ds.cifar100_labels != "coarse") {
        throw UserError(where + ".cifar100_labels must be fine or coarse, not '" +
                        ds.cifar100_labels + "'");
      }
      ds.options = option_list(d.value("options", json()), where + ".options");
      ds.train = option_list(d.value("train", json()), where + ".train");
    } else {
      throw UserError(where + " must be a name or an object");
    }
    const auto& names = data::dataset_names();
    if (std::find(names.begin(), names.end(), ds.name) == names.end()) {
      throw UserError(where + ": unknown dataset '" + ds.name + "'");
    }
    if (!data_dir.empty()) ds.data_dir = data_dir;
    spec.datasets.push_back(ds);
  }
  for (const auto& a : list("attacks")) {
    const std::string where = file + ": attacks[]";
    AttackSpec attack;
    if (a.is_string()) {
      attack.name = a.get<std::string>();
    } else if (a.is_object()) {
      attack.name = string_of(a, "name", where);
      attack.options = option_list(a.value("options", json()), where + ".options");
      attack.train = option_list(a.value("train", json()), where + ".train");
    } else {
      throw UserError(where + " must be a name or an object");
    }
    if (attack.name.empty() || attack.name == "none") {
      throw UserError(where + ": each attack needs a name (badnets, blend, ...)");
    }
    for (const auto& other : spec.attacks) {
      if (other.name == attack.name) throw UserError(where + ": '" + attack.name + "' twice");
    }
    spec.attacks.push_back(attack);
  }
  for (const auto& d : list("defenses")) {
    const std::string where = file + ": defenses[]";
    DefenseSpec defense;
    if (d.is_string()) {
      defense.command = d.get<std::string>();
    } else if (d.is_object()) {
      defense.command = string_of(d, "command", where);
      defense.name = string_of(d, "name", where);
      defense.options = option_list(d.value("options", json()), where + ".options");
    } else {
      throw UserError(where + " must be a command or an object");
    }
    if (defense.command == "nad") defense.command = "erase";
    const auto known =
        std::find_if(known_defenses.begin(), known_defenses.end(),
                     [&](const DefenseInfo& info) { return info.name == defense.command; });
    if (known == known_defenses.end()) {
      std::string names;
      for (const auto& info : known_defenses) names += (names.empty() ? "" : ", ") + info.name;
      throw UserError(where + ": command '" + defense.command + "' is not a defense (" + names +
                      ")");
    }
    if (defense.name.empty()) defense.name = known->title;
    defense.uses_clean_data = known->uses_clean_data;
    defense.finetunes = known->finetunes;
    for (const auto& other : spec.defenses) {
      if (other.name == defense.name) {
        throw UserError(where + ": two defenses are named '" + defense.name +
                        "' (give each a distinct name)");
      }
    }
    spec.defenses.push_back(defense);
  }
  if (j.contains("shared_lr")) {
    if (!j["shared_lr"].is_boolean()) throw UserError(file + ": shared_lr must be true or false");
    spec.shared_lr = j["shared_lr"].get<bool>();
  }
  if (spec.shared_lr) {
    for (size_t i = 0; i < spec.defenses.size() && !spec.lr_source; ++i) {
      if (spec.defenses[i].command == "finetune" && searches_lr(spec, spec.defenses[i]))
        spec.lr_source = i;
    }
    if (!spec.lr_source) {
      throw UserError(file + ": shared_lr needs a finetune defense that searches its rate (no " +
                      flag::lr + " in its options or defense_options)");
    }
  }
  if (j.contains("models")) {
    if (!j["models"].is_object())
      throw UserError(file + ": models must map DATASET/ATTACK to files");
    for (const auto& [key, value] : j["models"].items()) {
      if (!value.is_string()) throw UserError(file + ": models." + key + " must be a file name");
      spec.models[key] = value.get<std::string>();
    }
  }
  return spec;
}

// A folder name from a column name ("Fine-pruning" -> "fine-pruning", "NAD (sum)" -> "nad-sum").
std::string slug(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "defense" : out;
}

// A cell is finished when its folder has summary.json and was made by the same command; a
// folder made by another command is an error rather than a silently stale number.
// `--threads` is left out of the comparison: it changes how fast a cell runs, not what it
// measures, and a resumed table often runs on another machine.
json without_threads(const json& args) {
  json kept = json::array();
  if (!args.is_array()) return kept;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag::threads) {
      ++i;
      continue;
    }
    kept.push_back(args[i]);
  }
  return kept;
}

bool cell_finished(const fs::path& dir, const std::vector<std::string>& args) {
  // An interrupted cell's summary says so; it is resumed, not kept.
  if (!finished_run(dir)) return false;
  const json recorded = io::read_json_or_null(dir / "cell.json");
  if (recorded.is_object() &&
      without_threads(recorded.value("args", json())) == without_threads(json(args)))
    return true;
  throw UserError(dir.string() +
                  " holds a finished run made with other options than the experiment now asks "
                  "for; delete that folder or use another " +
                  flag::out);
}

std::optional<double> number_at(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_number()) return j[key].get<double>();
  return std::nullopt;
}

// DER (BackdoorBench) from percentages: [max(0, dASR) - max(0, dACC) + 1] / 2 on fractions.
std::optional<double> der(const json& before, const json& after) {
  auto asr_b = number_at(before, "asr"), asr_a = number_at(after, "asr");
  auto acc_b = number_at(before, "clean_acc"), acc_a = number_at(after, "clean_acc");
  if (!asr_b || !asr_a || !acc_b || !acc_a) return std::nullopt;
  return (std::max(0.0, (*asr_b - *asr_a) / 100) - std::max(0.0, (*acc_b - *acc_a) / 100) + 1) / 2;
}

std::string fixed(const std::optional<double>& v, int digits = 2) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, *v);
  return buf;
}

// The cell's `--verify` record (summary.json's "verify"), or null.
const json& verification_of(const json& row, const std::string& defense) {
  static const json none;
  if (!row.contains("defenses") || !row["defenses"].contains(defense)) return none;
  const json& cell = row["defenses"][defense];
  if (!cell.is_object() || !cell.contains("summary") || !cell["summary"].is_object()) return none;
  const json& summary = cell["summary"];
  if (!summary.contains("verify") || !summary["verify"].is_object()) return none;
  return summary["verify"];
}

// With `--verify` among a defense's options: what a defender sees without attack knowledge,
// per row and defense: Neural Cleanse's largest anomaly index before and after (* flagged), and
// the success of the reversed trigger found before on the cleaned model.
void write_verification(std::ostream& md, const json& rows, const TableSpec& spec) {
  bool any = false;
  for (const auto& row : rows) {
    for (const auto& d : spec.defenses) any = any || !verification_of(row, d.name).is_null();
  }
  if (!any) return;
  md << "\n## Verification without attack knowledge (`" << flag::verify
     << "`)\n\nPer defense: Neural Cleanse's largest anomaly index before -> after (class; * "
        "flagged), and the success of the reversed trigger found before on the model before -> "
        "after.\n\n| Attack |";
  for (const auto& d : spec.defenses) md << ' ' << d.name << " NC index | " << d.name << " RT % |";
  md << "\n|---|";
  for (size_t i = 0; i < spec.defenses.size(); ++i) md << "---|---|";
  md << '\n';
  auto index = [](const json& side) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.2f (%lld)%s", side.value("max_anomaly_index", 0.0),
                  static_cast<long long>(side.value("most_anomalous", int64_t{-1})),
                  side.value("verdict", std::string()) == "backdoored" ? "*" : "");
    return std::string(buffer);
  };
  for (const auto& row : rows) {
    md << "| " << row.value("dataset", std::string()) << ' ' << row.value("attack", std::string())
       << " |";
    for (const auto& d : spec.defenses) {
      const json& v = verification_of(row, d.name);
      if (v.is_null()) {
        md << " - | - |";
        continue;
      }
      const json& trigger = v["reversed_trigger"];
      md << ' ' << index(v["before"]) << " -> " << index(v["after"]) << " | "
         << fixed(std::optional<double>(trigger.value("success_before", 0.0))) << " -> "
         << fixed(std::optional<double>(trigger.value("success_after", 0.0))) << " |";
    }
    md << '\n';
  }
}

// Rows of a CSV file with a header, as column -> text.
std::vector<std::map<std::string, std::string>> read_csv(const fs::path& file) {
  std::vector<std::map<std::string, std::string>> rows;
  std::ifstream in(file);
  std::string line;
  if (!std::getline(in, line)) return rows;
  std::vector<std::string> header;
  std::stringstream hs(line);
  for (std::string cell; std::getline(hs, cell, ',');) header.push_back(cell);
  while (std::getline(in, line)) {
    std::stringstream ls(line);
    std::map<std::string, std::string> row;
    size_t i = 0;
    for (std::string cell; std::getline(ls, cell, ',') && i < header.size(); ++i) {
      row[header[i]] = cell;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::optional<double> parse_number(const std::string& text) {
  if (text.empty() || text == "-") return std::nullopt;
  try {
    return std::stod(text);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// ACC and ASR per epoch of a defense run (from its metrics.csv), one line per phase; the model
// before training is each phase's epoch 0.
void write_epoch_curve(const fs::path& run, const fs::path& png, const std::string& title) {
  const auto rows = read_csv(run / "metrics.csv");
  std::optional<std::map<std::string, std::string>> before;
  std::vector<std::string> phases;
  for (const auto& row : rows) {
    const std::string phase = row.count("phase") ? row.at("phase") : "";
    if (phase == "before") {
      before = row;
    } else if (std::find(phases.begin(), phases.end(), phase) == phases.end()) {
      phases.push_back(phase);
    }
  }
  io::LineChart chart;
  chart.title = title;
  chart.x_label = "epoch";
  chart.y_label = "percent";
  for (size_t p = 0; p < phases.size(); ++p) {
    io::ChartSeries acc, asr;
    acc.name = "ACC " + phases[p];
    asr.name = "ASR " + phases[p];
    acc.rgb = {0.12, 0.35, 0.75};
    asr.rgb = {0.85, 0.2, 0.15};
    acc.dashed = asr.dashed = p + 1 < phases.size();  // the final phase is drawn solid
    auto add = [&](double epoch, const std::map<std::string, std::string>& row) {
      if (auto v = parse_number(row.count("clean_acc") ? row.at("clean_acc") : "")) {
        acc.x.push_back(epoch);
        acc.y.push_back(*v);
      }
      if (auto v = parse_number(row.count("asr") ? row.at("asr") : "")) {
        asr.x.push_back(epoch);
        asr.y.push_back(*v);
      }
    };
    if (before) add(0, *before);
    for (const auto& row : rows) {
      if (row.count("phase") && row.at("phase") == phases[p]) {
        add(parse_number(row.at("epoch")).value_or(0), row);
      }
    }
    chart.series.push_back(acc);
    chart.series.push_back(asr);
  }
  io::write_line_chart(png, chart);
}

void write_mcr_curve(const fs::path& run, const fs::path& png, const std::string& title) {
  io::LineChart chart;
  chart.title = title;
  chart.x_label = "t (0: backdoored model, 1: finetuned end)";
  chart.y_label = "percent";
  io::ChartSeries acc, asr;
  acc.name = "ACC";
  asr.name = "ASR";
  acc.rgb = {0.12, 0.35, 0.75};
  asr.rgb = {0.85, 0.2, 0.15};
  for (const auto& row : read_csv(run / "mcr_curve.csv")) {
    const auto t = parse_number(row.count("t") ? row.at("t") : "");
    if (!t) continue;
    if (auto v = parse_number(row.count("clean_acc") ? row.at("clean_acc") : "")) {
      acc.x.push_back(*t);
      acc.y.push_back(*v);
    }
    if (auto v = parse_number(row.count("asr") ? row.at("asr") : "")) {
      asr.x.push_back(*t);
      asr.y.push_back(*v);
    }
  }
  chart.series = {acc, asr};
  io::write_line_chart(png, chart);
}

std::string join(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) out += (out.empty() ? "" : " ") + a;
  return out;
}

// The experiment file with the command line's choices applied (--attacks, --model,
// --triggered-test); with --resume, the folder's own experiment file. `config` gets the folder and
// file resolved; `raw` the file as read.
TableSpec load_table_spec(TableConfig& config, json& raw) {
  if (!config.resume.empty()) {
    check_resume_folder(config.out, config.resume);
    config.out = config.resume;
    if (config.config_file.empty())
      config.config_file = (fs::path(config.out) / "experiment.json").string();
  }
  if (config.config_file.empty()) throw UserError(flag::config + " is required");
  std::ifstream in(config.config_file);
  if (!in) throw UserError(config.config_file + ": cannot read the experiment file");
  try {
    raw = json::parse(in);
  } catch (const json::exception& e) {
    throw UserError(config.config_file + ": not valid JSON (" + e.what() + ")");
  }
  TableSpec spec = parse_spec(raw, config.config_file, config.data_dir, config.defenses);
  if (!config.attacks.empty()) {
    std::vector<AttackSpec> chosen;
    for (const auto& name : config.attacks) {
      auto it = std::find_if(spec.attacks.begin(), spec.attacks.end(),
                             [&](const AttackSpec& a) { return a.name == name; });
      if (it == spec.attacks.end()) {
        throw UserError(flag::attacks + ": '" + name + "' is not an attack of " +
                        config.config_file);
      }
      chosen.push_back(*it);
    }
    spec.attacks = chosen;
  }
  // DATASET/ATTACK=PATH options, keyed by "DATASET/ATTACK".
  auto parse_cells = [](const std::vector<std::string>& values, const std::string& option,
                        const std::string& what) {
    std::map<std::string, std::string> out;
    for (const auto& given : values) {
      const size_t eq = given.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == given.size() || given.find('/') > eq) {
        throw UserError(option + " must be DATASET/ATTACK=" + what + ", got '" + given + "'");
      }
      if (!fs::exists(given.substr(eq + 1))) {
        throw UserError(option + ": " + given.substr(eq + 1) + " does not exist");
      }
      out[given.substr(0, eq)] = given.substr(eq + 1);
    }
    return out;
  };
  // The command line's add to (and override) the experiment's "models".
  for (const auto& [cell, file] : parse_cells(config.models, flag::model, "FILE")) {
    spec.models[cell] = file;
  }
  spec.triggered_tests = parse_cells(config.triggered_tests, flag::triggered_test, "DIR");
  const std::vector<std::string> known_attacks = attacks::attack_names();
  for (const auto& ds : spec.datasets) {
    for (const auto& attack : spec.attacks) {
      const std::string cell = ds.name + "/" + attack.name;
      const bool known =
          std::find(known_attacks.begin(), known_attacks.end(), attack.name) != known_attacks.end();
      if (!known && (!spec.models.count(cell) || !spec.triggered_tests.count(cell))) {
        throw UserError(config.config_file + ": attack '" + attack.name +
                        "' is not one of nad's; its row needs the backdoored model (" +
                        flag::model + " " + cell + "=FILE) and its triggered test images (" +
                        flag::triggered_test + " " + cell + "=DIR)");
      }
    }
  }
  return spec;
}

std::string shard_suffix(const TableConfig& config) {
  return config.shard_count > 1 ? "-shard-" + std::to_string(config.shard_index) + "-of-" +
                                      std::to_string(config.shard_count)
                                : "";
}

// Writes table.md, table.csv and results.json (a shard's with its suffix) from the rows so far:
// after every row, so that a long grid shows its progress, and once more at the end. Returns
// the results and the Markdown table.
std::pair<json, std::string> write_table_files(const TableSpec& spec, const TableConfig& config,
                                               const json& raw, const json& rows,
                                               const std::vector<std::string>& failed, size_t ran,
                                               bool complete) {
  const fs::path out(config.out);
  const bool sharded = config.shard_count > 1;
  const std::string suffix = shard_suffix(config);
  // The paper's shape: one row per attack; Before and each defense as ASR / ACC; averages; DER.
  const bool many_datasets = spec.datasets.size() > 1;
  std::ostringstream md, csv;
  md << "# " << spec.name << "\n\nASR and ACC (%) of each backdoored model before and after each "
     << "defense, all defenses using the same " << spec.clean_ratio * 100
     << "% clean subset; DER as in BackdoorBench (higher is better, 50 = no change).\n\n";
  if (!complete) {
    md << "*In progress: " << rows.size() << " of " << spec.datasets.size() * spec.attacks.size()
       << " rows; the grid is still running.*\n\n";
  }
  md << "| Attack | Before ASR | Before ACC |";
  csv << "dataset,attack,before_asr,before_acc";
  for (const auto& d : spec.defenses) {
    md << ' ' << d.name << " ASR | " << d.name << " ACC |";
    csv << ',' << slug(d.name) << "_asr," << slug(d.name) << "_acc," << slug(d.name) << "_der";
  }
  md << "\n|---|---:|---:|";
  for (size_t i = 0; i < spec.defenses.size(); ++i) md << "---:|---:|";
  md << '\n';
  csv << '\n';
  std::vector<double> sum(2 + 3 * spec.defenses.size(), 0);
  std::vector<int> count(sum.size(), 0);
  auto add = [&](size_t column, const std::optional<double>& v) {
    if (v) {
      sum[column] += *v;
      ++count[column];
    }
  };
  for (const auto& row : rows) {
    const std::string label = (many_datasets ? row["dataset"].get<std::string>() + " " : "") +
                              row["attack"].get<std::string>();
    const json before = row.value("before", json());
    md << "| " << label << " | " << fixed(number_at(before, "asr")) << " | "
       << fixed(number_at(before, "clean_acc")) << " |";
    csv << row["dataset"].get<std::string>() << ',' << row["attack"].get<std::string>() << ','
        << fixed(number_at(before, "asr"), 4) << ',' << fixed(number_at(before, "clean_acc"), 4);
    add(0, number_at(before, "asr"));
    add(1, number_at(before, "clean_acc"));
    for (size_t i = 0; i < spec.defenses.size(); ++i) {
      const json cell = row["defenses"].value(spec.defenses[i].name, json());
      const json after = cell.is_object() ? cell.value("after", json()) : json();
      const std::optional<double> d = number_at(cell, "der");
      md << ' ' << fixed(number_at(after, "asr")) << " | " << fixed(number_at(after, "clean_acc"))
         << " |";
      csv << ',' << fixed(number_at(after, "asr"), 4) << ','
          << fixed(number_at(after, "clean_acc"), 4) << ',' << fixed(d, 4);
      add(2 + 3 * i, number_at(after, "asr"));
      add(3 + 3 * i, number_at(after, "clean_acc"));
      add(4 + 3 * i, d);
    }
    md << '\n';
    csv << '\n';
  }
  auto mean = [&](size_t column) {
    return count[column] ? std::optional<double>(sum[column] / count[column]) : std::nullopt;
  };
  md << "| **Average** | " << fixed(mean(0)) << " | " << fixed(mean(1)) << " |";
  for (size_t i = 0; i < spec.defenses.size(); ++i) {
    md << ' ' << fixed(mean(2 + 3 * i)) << " | " << fixed(mean(3 + 3 * i)) << " |";
  }
  md << "\n\n| Defense | mean DER (%) |\n|---|---:|\n";
  for (size_t i = 0; i < spec.defenses.size(); ++i) {
    const auto d = mean(4 + 3 * i);
    md << "| " << spec.defenses[i].name << " | "
       << fixed(d ? std::optional<double>(*d * 100) : std::nullopt) << " |\n";
  }
  if (spec.shared_lr) {
    md << "\nOne learning rate per model (`shared_lr`): the finetune defense's " << flag::lr
       << " auto choice, given as `" << flag::lr << "` to the defenses that set none:";
    for (const auto& row : rows) {
      md << ' ' << row["attack"].get<std::string>() << ' '
         << (row.contains("shared_lr") ? fixed(row["shared_lr"].get<double>(), 4) : "-") << ';';
    }
    md << '\n';
  }
  write_verification(md, rows, spec);
  if (!failed.empty()) {
    md << "\nFailed cells (rerun `nad table` to retry):\n";
    for (const auto& f : failed) md << "- `" << f << "`\n";
  }
  write_text_atomic(out / ("table" + suffix + ".md"), md.str());
  write_text_atomic(out / ("table" + suffix + ".csv"), csv.str());

  json averages = {{"before",
                    {{"asr", mean(0) ? json(*mean(0)) : json()},
                     {"clean_acc", mean(1) ? json(*mean(1)) : json()}}}};
  for (size_t i = 0; i < spec.defenses.size(); ++i) {
    averages[spec.defenses[i].name] = {
        {"asr", mean(2 + 3 * i) ? json(*mean(2 + 3 * i)) : json()},
        {"clean_acc", mean(3 + 3 * i) ? json(*mean(3 + 3 * i)) : json()},
        {"der", mean(4 + 3 * i) ? json(*mean(4 + 3 * i)) : json()}};
  }
  json results = {
      {"name", spec.name},
      {"experiment", raw},
      {"attacks_chosen", config.attacks},
      {"models_given", spec.models},
      {"triggered_tests_given", spec.triggered_tests},
      {"rows", rows},
      {"averages", averages},
      {"cells_run", ran},
      {"failed", failed},
      {"shard",
       sharded ? json({{"index", config.shard_index}, {"count", config.shard_count}}) : json()},
      {"complete", complete}};
  io::write_json(out / ("results" + suffix + ".json"), results);
  return std::make_pair(results, md.str());
}

// Runs the grid's cells one at a time as child processes: keeps a finished cell, resumes an
// interrupted one, stops the grid on a signal, and counts and names the failed ones (with
// --merge it runs nothing and names the unfinished ones).
struct CellRunner {
  CellRunner(const TableConfig& config, size_t total, const CommandRunner& run_command,
             std::function<void(const std::string&)> log)
      : total(total), config_(config), run_command_(run_command), log_(std::move(log)) {}

  // Whether the cell `dir` is finished, running `args` when it is not.
  bool run(const fs::path& dir, const std::vector<std::string>& args) {
    const fs::path out(config_.out);
    ++index;
    const std::string counter = "[" + std::to_string(index) + "/" + std::to_string(total) + "] ";
    if (cell_finished(dir, args)) {
      log_(counter + dir.string() + ": done before, kept");
      return true;
    }
    if (config_.merge) {
      missing.push_back(dir.string());
      return false;
    }
    if (stop_requested()) {
      throw Interrupted("table stopped before " + dir.string() + "; continue with nad table " +
                            flag::resume + " " + out.string(),
                        stop_signal());
    }
    fs::create_directories(dir);
    // A cell stopped part-way continues from its saved state.
    std::vector<std::string> command = args;
    if (fs::exists(dir / "state" / "args.json") && fs::exists(dir / "cell.json")) {
      command.push_back(flag::resume);
      command.push_back(dir.string());
      log_(counter + "resuming " + dir.string());
    }
    io::write_json(dir / "cell.json", {{"args", args}});
    log_(counter + "nad " + join(command));
    const auto start = std::chrono::steady_clock::now();
    const int code = run_command_(command);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++ran;
    // Interrupted (here, or the cell alone by a signal): stop the grid; rerun to resume.
    const int signal_number = stop_signal()           ? stop_signal()
                              : code == 128 + SIGINT  ? SIGINT
                              : code == 128 + SIGTERM ? SIGTERM
                                                      : 0;
    if (signal_number) {
      throw Interrupted("table stopped during " + dir.string() + "; continue with nad table " +
                            flag::resume + " " + out.string(),
                        signal_number);
    }
    if (code != 0 || !fs::exists(dir / "summary.json")) {
      log_(counter + dir.string() + ": FAILED (exit code " + std::to_string(code) + ")");
      failed.push_back(dir.string());
      return false;
    }
    log_(counter + dir.string() + ": finished in " + std::to_string(static_cast<int>(seconds)) +
         " s");
    return true;
  }

  size_t total = 0, index = 0, ran = 0;
  std::vector<std::string> failed, missing;  // missing: unfinished cells, with --merge

 private:
  const TableConfig& config_;
  const CommandRunner& run_command_;
  std::function<void(const std::string&)> log_;
};

}  // namespace

nlohmann::json run_table(const TableConfig& given, const CommandRunner& run_command) {
  TableConfig config = given;
  json raw;
  const TableSpec spec = load_table_spec(config, raw);
  if (config.out.empty()) throw UserError(flag::out + " is required");
  if (config.shard_count < 1 || config.shard_index < 0 || config.shard_index >= config.shard_count)
    throw UserError(flag::shard + " I/N needs 0 <= I < N");
  if (config.merge && config.shard_count > 1)
    throw UserError(flag::merge + " and " + flag::shard + " exclude each other");
  const std::string suffix = shard_suffix(config);
  const fs::path out(config.out);
  fs::create_directories(out);
  io::write_json(out / "experiment.json", raw);
  if (config.resume.empty() && !command_line().empty())
    io::write_json(out / "state" / "args.json", json(command_line()));
  auto log = [&](const std::string& line) {
    if (!config.quiet) std::fprintf(stderr, "%s\n", line.c_str());
  };

  CellRunner cells(config, spec.datasets.size() * spec.attacks.size() * (1 + spec.defenses.size()),
                   run_command, log);

  json rows = json::array();
  auto write_outputs = [&](bool complete) {
    return write_table_files(spec, config, raw, rows, cells.failed, cells.ran, complete);
  };
  int row_number = 0;
  for (const auto& ds : spec.datasets) {
    const fs::path ds_dir = out / ds.name;
    fs::create_directories(ds_dir);
    ChildCommand common;
    common.dataset = ds.name;
    common.data_dir = ds.data_dir;
    common.image_size = ds.image_size;
    if (ds.name == "cifar100") common.cifar100_labels = ds.cifar100_labels;
    common.seed = spec.seed;
    common.threads = config.threads;
    common.device = config.device;
    common.quiet = config.quiet;
    common.dataset_options = spec.options;
    common.dataset_options.insert(common.dataset_options.end(), ds.options.begin(),
                                  ds.options.end());
    common.target = ds.target;

    // One clean subset for every defense of the dataset, drawn once.
    const fs::path indices = ds_dir / "clean_indices.txt";
    if (!fs::exists(indices)) {
      data::DatasetOptions options;
      options.name = ds.name;
      options.data_dir = ds.data_dir;
      options.image_size = ds.image_size;
      options.cifar100_labels = ds.cifar100_labels;
      const data::DatasetPair data = data::load_dataset(options);
      const defenses::CleanData clean =
          defenses::make_clean_data(data.train, spec.clean_ratio, spec.seed, 0.0);
      defenses::write_indices(indices, clean.indices);
      log(ds.name + ": clean subset of " + std::to_string(clean.indices.size(0)) + " images in " +
          indices.string());
    }

    for (const auto& attack : spec.attacks) {
      // Another shard's row (--merge runs as the one shard and looks at every row).
      if (row_number++ % config.shard_count != config.shard_index) {
        cells.index += 1 + spec.defenses.size();
        continue;
      }
      const fs::path attack_dir = ds_dir / attack.name;
      // Images someone else triggered replace nad's trigger wherever ASR is measured.
      const auto triggered_test = spec.triggered_tests.find(ds.name + "/" + attack.name);
      const bool triggered = triggered_test != spec.triggered_tests.end();
      ChildCommand measured = common;  // what every cell of the row measures ASR with
      measured.attack = attack.name;
      measured.attack_options = attack.options;

      const fs::path bd_dir = attack_dir / "backdoored";
      const auto given = spec.models.find(ds.name + "/" + attack.name);
      ChildCommand backdoored = measured;
      if (given != spec.models.end()) {
        backdoored.subcommand = "eval";
        backdoored.model = given->second;
        if (triggered) backdoored.triggered_test = triggered_test->second;
      } else {
        backdoored.subcommand = "train";
        for (const auto* options : {&spec.train, &ds.train, &attack.train}) {
          backdoored.run_options.insert(backdoored.run_options.end(), options->begin(),
                                        options->end());
        }
      }
      backdoored.out = bd_dir.string();
      const std::vector<std::string> bd_args = to_argv(backdoored);
      json row = {{"dataset", ds.name}, {"attack", attack.name}, {"defenses", json::object()}};
      if (!cells.run(bd_dir, bd_args)) {
        cells.index += spec.defenses.size();
        if (config.merge) {  // the row's backdoored model is not finished
          for (const auto& defense : spec.defenses)
            cells.missing.push_back((attack_dir / slug(defense.name)).string());
          row["error"] = "not finished";
          rows.push_back(row);
          continue;
        }
        row["error"] = "the backdoored model failed; its defenses did not run";
        rows.push_back(row);
        write_outputs(false);
        continue;
      }
      const std::string model =
          given != spec.models.end() ? given->second : (bd_dir / "model.pt").string();
      row["before"] = io::read_json_or_null(bd_dir / "summary.json");
      row["before_config"] = io::read_json_or_null(bd_dir / "config.json");
      // A trigger made while training (trojan) is what the defenses measure ASR with.
      if (fs::exists(bd_dir / "trigger.png")) {
        measured.trigger_file = (bd_dir / "trigger.png").string();
      }
      if (triggered) measured.triggered_test = triggered_test->second;
      // With shared_lr the rate's source runs first.
      const DefenseSpec* lr_source = spec.lr_source ? &spec.defenses[*spec.lr_source] : nullptr;
      std::vector<const DefenseSpec*> order;
      if (lr_source) order.push_back(lr_source);
      for (const auto& defense : spec.defenses) {
        if (&defense != lr_source) order.push_back(&defense);
      }
      std::optional<double> shared_lr;
      for (const DefenseSpec* defense_ptr : order) {
        const DefenseSpec& defense = *defense_ptr;
        const fs::path dir = attack_dir / slug(defense.name);
        const bool takes_shared_lr = lr_source && &defense != lr_source && defense.finetunes &&
                                     defense.uses_clean_data && searches_lr(spec, defense);
        if (takes_shared_lr && !shared_lr) {
          ++cells.index;
          row["defenses"][defense.name] = {{"folder", fs::relative(dir, out).string()},
                                           {"error", "no shared learning rate: the " +
                                                         lr_source->name + " cell did not finish"}};
          if (!config.merge) cells.failed.push_back(dir.string());
          continue;
        }
        ChildCommand run = measured;
        run.subcommand = defense.command;
        run.model = model;
        if (defense.uses_clean_data) {
          run.clean_indices = indices.string();
          if (defense.finetunes) run.run_options = spec.defense_options;
        }
        run.run_options.insert(run.run_options.end(), defense.options.begin(),
                               defense.options.end());
        if (takes_shared_lr) run.lr = *shared_lr;
        run.out = dir.string();
        const std::vector<std::string> args = to_argv(run);
        json cell = {{"folder", fs::relative(dir, out).string()}};
        if (cells.run(dir, args)) {
          const json summary = io::read_json_or_null(dir / "summary.json");
          cell["after"] = summary.value("after", json());
          cell["summary"] = summary;
          cell["config"] = io::read_json_or_null(dir / "config.json");
          if (&defense == lr_source && summary.value("lr", json()).is_number()) {
            shared_lr = summary["lr"].get<double>();
            row["shared_lr"] = *shared_lr;
          }
          if (auto d = der(row["before"], cell["after"])) cell["der"] = *d;
          if (io::figures_available()) {
            const fs::path curves = out / "curves";
            fs::create_directories(curves);
            const std::string id = ds.name + "-" + attack.name + "-" + slug(defense.name);
            const std::string title = ds.name + ", " + attack.name + ": " + defense.name;
            write_epoch_curve(dir, curves / (id + ".png"), title + ", ACC / ASR per epoch");
            if (defense.command == "mcr" && fs::exists(dir / "mcr_curve.csv")) {
              write_mcr_curve(dir, curves / (id + "-t.png"), title + " along the curve");
            }
          }
        } else {
          cell["error"] = config.merge ? "not finished" : "failed; see " + dir.string();
        }
        row["defenses"][defense.name] = cell;
      }
      rows.push_back(row);
      if (!config.merge) write_outputs(false);
    }
  }

  if (config.merge && !cells.missing.empty()) {
    throw UserError(flag::merge + ": " + std::to_string(cells.missing.size()) +
                    " cell(s) are not finished, first " + cells.missing.front() +
                    "; run the missing shards first");
  }
  const auto [results, table] = write_outputs(true);
  log("wrote " + (out / ("table" + suffix + ".md")).string());
  if (!config.quiet) std::fprintf(stderr, "\n%s", table.c_str());
  if (!cells.failed.empty()) {
    throw UserError(std::to_string(cells.failed.size()) +
                    " cell(s) failed: " + cells.failed.front() +
                    (cells.failed.size() > 1 ? " and others" : "") + " (rerun to retry)");
  }
  return results;
}

}  // namespace nad::pipeline
