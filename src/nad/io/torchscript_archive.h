#pragma once
#include <cstddef>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "nad/io/zip_archive.h"

// TorchScript archives (torch.jit.save) as nad checks them before LibTorch compiles anything.
// A TorchScript file is code: its code/*.py files are compiled and run by LibTorch. nad reads
// the archive with its own zip reader first and refuses one whose code calls an operator
// outside an allowlist (tensor operators and control flow), or whose __setstate__ does more
// than assign its state's elements.
namespace nad::io {

// Whether an archive's entries look like torch.jit.save's: PREFIX/code/..., PREFIX/data.pkl and
// PREFIX/constants.pkl under one top folder.
bool is_torchscript_archive(const zip::Reader& archive);

// Operator `ns::name` (as the code calls it) allowed? The default, from LibTorch's operator
// registry: aten:: and prim:: operators except those that touch files (aten::save,
// aten::from_file); any other namespace (custom ops, c10d, profiler, quantized) is refused.
using OperatorPolicy = std::function<bool(const std::string& ns, const std::string& name)>;
OperatorPolicy default_operator_policy();

struct TorchScriptCheck {
  std::string prefix;                   // the archive's top folder, with '/'
  std::vector<std::string> code_files;  // every code file checked
  std::set<std::string> operators;      // every operator the code calls, as ns::name
};

// Reads every code file of the archive and checks it; UserError naming the operator (or the
// construct) and the file and line inside the archive. `where` names the archive in messages.
TorchScriptCheck check_torchscript_archive(const unsigned char* data, size_t size,
                                           const std::string& where, const OperatorPolicy& policy);

// One code file's text (for tests and the fuzz target): the operators it calls, checked.
void check_torchscript_code(const std::string& code, const std::string& file,
                            const OperatorPolicy& policy, std::set<std::string>* operators);

}  // namespace nad::io
