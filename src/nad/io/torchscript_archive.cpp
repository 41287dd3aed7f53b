#include "nad/io/torchscript_archive.h"

#include <torch/csrc/jit/runtime/operator.h>

#include <algorithm>
#include <cctype>
#include <regex>
#include <unordered_set>

#include "nad/util/error.h"

namespace nad::io {

namespace {

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_identifier_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_identifier_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Names under `torch.` in printed TorchScript that are types, not operator calls.
const std::unordered_set<std::string>& torch_type_names() {
  static const std::unordered_set<std::string> names = {
      "Tensor", "device", "dtype", "Generator", "layout", "memory_format", "Size"};
  return names;
}

// A `def __setstate__` body may only copy its state's elements into attributes.
void check_setstate(const std::vector<std::string>& lines, size_t def_line,
                    const std::string& where) {
  static const std::regex allowed(
      R"(\s*((self\.[A-Za-z_]\w*|_\d+) = \(state\)\[\d+\]|self\.[A-Za-z_]\w* = _\d+|return None|pass))");
  const std::string& header = lines[def_line];
  const size_t indent = header.find_first_not_of(' ');
  size_t line = def_line;
  // The signature may run over several lines; it ends with ':'.
  while (line < lines.size() && !ends_with(lines[line], ":")) ++line;
  for (++line; line < lines.size(); ++line) {
    const std::string& text = lines[line];
    const size_t first = text.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    if (first <= indent) break;  // the method ended
    if (!std::regex_match(text, allowed)) {
      throw UserError(where + " line " + std::to_string(line + 1) +
                      ": __setstate__ does more than assign tensors from its state (refused: " +
                      "it would run while LibTorch loads the file): '" + text.substr(first) + "'");
    }
  }
}

}  // namespace

bool is_torchscript_archive(const zip::Reader& archive) {
  if (archive.entries().empty()) return false;
  const std::string& first = archive.entries().front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos) return false;
  const std::string prefix = first.substr(0, slash + 1);
  if (!archive.find(prefix + "data.pkl") || !archive.find(prefix + "constants.pkl")) return false;
  return std::any_of(archive.entries().begin(), archive.entries().end(),
                     [&](const zip::Entry& e) { return starts_with(e.name, prefix + "code/"); });
}

OperatorPolicy default_operator_policy() {
  static const std::unordered_set<std::string> registered = [] {
    std::unordered_set<std::string> names;
    for (const auto& op : torch::jit::getAllOperators()) {
      names.insert(op->schema().name());  // "aten::conv2d", overloads share the name
    }
    return names;
  }();
  return [](const std::string& ns, const std::string& name) {
    if (ns != "aten" && ns != "prim") return false;
    if (ns == "aten" && (name == "save" || name == "from_file")) return false;
    return registered.count(ns + "::" + name) > 0;
  };
}

void check_torchscript_code(const std::string& code, const std::string& file,
                            const OperatorPolicy& policy, std::set<std::string>* operators) {
  std::vector<std::string> lines(1);
  for (char c : code) {
    if (c == '\n') {
      lines.emplace_back();
    } else {
      lines.back() += c;
    }
  }
  for (size_t l = 0; l < lines.size(); ++l) {
    const std::string& text = lines[l];
    const std::string where = file + " line " + std::to_string(l + 1);
    auto refuse = [&](const std::string& what) {
      throw UserError(where + ": " + what + " (refused before LibTorch compiles anything)");
    };
    for (size_t i = 0; i < text.size();) {
      const char c = text[i];
      if (c == '"' || c == '\'') {  // a string literal: skip it, escapes included
        size_t j = i + 1;
        while (j < text.size() && text[j] != c) j += text[j] == '\\' ? 2 : 1;
        i = j + 1;
        continue;
      }
      if (!is_identifier_start(c) ||
          (i > 0 && (is_identifier_char(text[i - 1]) || text[i - 1] == '.'))) {
        ++i;
        continue;
      }
      // A dotted name: a.b.c
      std::vector<std::string> parts;
      size_t j = i;
      while (true) {
        size_t k = j;
        while (k < text.size() && is_identifier_char(text[k])) ++k;
        parts.push_back(text.substr(j, k - j));
        if (k + 1 < text.size() && text[k] == '.' && is_identifier_start(text[k + 1])) {
          j = k + 1;
        } else {
          j = k;
          break;
        }
      }
      i = j;
      for (const auto& part : parts) {
        if (part == "load_library") refuse("'load_library' loads native code");
      }
      if (parts[0] == "def" || parts.size() < 2) {
        if (parts[0] == "def" && i + 1 < text.size()) {
          // "def __setstate__(" : the name follows
          size_t k = text.find_first_not_of(' ', i);
          if (k != std::string::npos && text.compare(k, 13, "__setstate__(") == 0) {
            check_setstate(lines, l, file);
          }
        }
        continue;
      }
      std::string ns, name;
      if (parts[0] == "ops" && parts.size() >= 3) {
        ns = parts[1];
        name = parts[2];
      } else if (parts[0] == "torch" && parts.size() >= 4 && parts[1] == "ops") {
        ns = parts[2];
        name = parts[3];
      } else if (parts[0] == "torch") {
        if (parts.size() == 2 && torch_type_names().count(parts[1])) continue;
        ns = "aten";
        name = parts[1];
        if (parts.size() > 2)
          refuse("'torch." + parts[1] + "." + parts[2] + "' is not an operator nad allows");
        // Printed code names aten operators torch.NAME and primitive ones ops.prim.NAME; a
        // torch.NAME that is only a prim:: operator is accepted as that.
        if (!policy("aten", name) && policy("prim", name)) ns = "prim";
      } else if (parts[0] == "__torch__" && parts.size() >= 3 && parts[1] == "torch" &&
                 parts[2] == "classes") {
        std::string cls;
        for (size_t p = 3; p < parts.size(); ++p) cls += (p > 3 ? "." : "") + parts[p];
        refuse("custom class '" + cls + "' (native code outside LibTorch's operators)");
      } else {
        continue;  // self.x, __torch__ code in the archive, locals
      }
      if (!policy(ns, name)) {
        if (ns != "aten" && ns != "prim") {
          refuse("calls " + ns + "::" + name + ", an operator of namespace '" + ns +
                 "' (custom or outside aten/prim)");
        }
        refuse("calls " + ns + "::" + name +
               (ns == "aten" && (name == "save" || name == "from_file")
                    ? ", which touches files"
                    : ", which is not an operator of this LibTorch"));
      }
      if (operators) operators->insert(ns + "::" + name);
    }
  }
}

TorchScriptCheck check_torchscript_archive(const unsigned char* data, size_t size,
                                           const std::string& where, const OperatorPolicy& policy) {
  const zip::Reader archive(data, size, where, /*allow_deflate=*/true);
  if (!is_torchscript_archive(archive)) {
    throw UserError("'" + where +
                    "' is not a TorchScript archive (no code/, data.pkl, constants.pkl)");
  }
  TorchScriptCheck check;
  const std::string& first = archive.entries().front().name;
  check.prefix = first.substr(0, first.find('/') + 1);
  for (const zip::Entry& entry : archive.entries()) {
    if (!starts_with(entry.name, check.prefix)) {
      throw UserError("'" + where + "': entry '" + entry.name +
                      "' is outside the archive's folder '" + check.prefix + "'");
    }
    // Compiled code: code/**/*.py. Debug pickles beside them hold source ranges only.
    if (!starts_with(entry.name, check.prefix + "code/") || !ends_with(entry.name, ".py")) continue;
    check_torchscript_code(archive.read(entry),
                           "'" + where + "': " + entry.name.substr(check.prefix.size()), policy,
                           &check.operators);
    check.code_files.push_back(entry.name);
  }
  if (check.code_files.empty()) {
    throw UserError("'" + where + "' is not a TorchScript archive (no code files)");
  }
  return check;
}

}  // namespace nad::io
