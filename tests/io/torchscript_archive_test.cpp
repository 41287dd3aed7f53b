// The TorchScript archive check: operators against the allowlist, __setstate__, and archives
// written by Debian's python3-torch (clean, and calling aten::save / aten::from_file / a custom
// operator namespace).
#include <gtest/gtest.h>

#include <fstream>

#include "nad/io/torchscript_archive.h"
#include "nad/util/error.h"
#include "support/cli.h"
#include "support/python.h"
#include "support/temp_dir.h"

namespace nad::io {
namespace {

// The message of the UserError `f` throws, or "" when it throws none.
template <class F>
std::string refusal(F f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

std::set<std::string> operators_of(const std::string& code) {
  std::set<std::string> ops;
  check_torchscript_code(code, "code/__torch__.py", default_operator_policy(), &ops);
  return ops;
}

TEST(TorchScriptCode, CollectsTheOperatorsOfPrintedCode) {
  const std::string code =
      "class Net(Module):\n"
      "  __parameters__ = [\"weight\", ]\n"
      "  weight : Tensor\n"
      "  head : __torch__.Head\n"
      "  def forward(self: __torch__.Net,\n"
      "    x: Tensor) -> Tensor:\n"
      "    _0 = __torch__.torch.nn.functional.relu\n"
      "    if torch.ne(torch.dim(x), 4):\n"
      "      _1 = torch.format(\"expected 4D input, not torch.save({})\", torch.dim(x))\n"
      "      ops.prim.RaiseException(_1, \"builtins.ValueError\")\n"
      "    y = torch.conv2d(x, self.weight, None, [1, 1], [1, 1], [1, 1])\n"
      "    return (self.head).forward(torch.relu(y), )\n";
  EXPECT_EQ(operators_of(code),
            (std::set<std::string>{"aten::conv2d", "aten::dim", "aten::format", "aten::ne",
                                   "aten::relu", "prim::RaiseException"}));
}

TEST(TorchScriptCode, RefusesFilesCustomNamespacesAndClasses) {
  const auto check = [](const std::string& body) {
    return refusal([&] { operators_of("  def forward(self, x: Tensor) -> Tensor:\n" + body); });
  };
  EXPECT_NE(check("    torch.save(x, \"/tmp/x\")\n").find("aten::save, which touches files"),
            std::string::npos);
  EXPECT_NE(
      check("    y = torch.from_file(\"/etc/passwd\", None, 10)\n").find("calls aten::from_file"),
      std::string::npos);
  EXPECT_NE(check("    y = ops.my_ops.leak(x)\n").find("namespace 'my_ops'"), std::string::npos);
  EXPECT_NE(check("    y = torch.ops.c10d.allreduce_(x)\n").find("c10d::allreduce_"),
            std::string::npos);
  EXPECT_NE(check("    y = ops.aten.not_an_operator(x)\n").find("not an operator"),
            std::string::npos);
  EXPECT_NE(check("    c : __torch__.torch.classes.evil.Runner = self.c\n")
                .find("custom class 'evil.Runner'"),
            std::string::npos);
  EXPECT_NE(check("    torch.ops.load_library(\"x.so\")\n").find("load_library"),
            std::string::npos);
  // The file and line are named.
  EXPECT_NE(check("    torch.save(x, \"/tmp/x\")\n").find("code/__torch__.py line 2"),
            std::string::npos);
}

TEST(TorchScriptCode, SetstateMayOnlyAssignItsState) {
  const std::string ok =
      "  def __setstate__(self: __torch__.M,\n"
      "    state: Tuple[Tensor, bool]) -> NoneType:\n"
      "    self.weight = (state)[0]\n"
      "    self.training = (state)[1]\n"
      "    return None\n"
      "  def forward(self, x: Tensor) -> Tensor:\n"
      "    return torch.relu(x)\n";
  EXPECT_EQ(operators_of(ok), (std::set<std::string>{"aten::relu"}));
  const std::string bad =
      "  def __setstate__(self: __torch__.M,\n"
      "    state: Tuple[Tensor, bool]) -> NoneType:\n"
      "    self.weight = torch.add((state)[0], 1)\n"
      "    return None\n";
  EXPECT_NE(refusal([&] { operators_of(bad); }).find("__setstate__ does more than assign"),
            std::string::npos);
}

// Archives written by torch.jit.save: a scripted and a traced model pass; one calling
// aten::save, aten::from_file or a custom operator namespace is refused naming it; a truncated
// or tampered archive is refused as such.
TEST(TorchScriptArchive, ChecksArchivesWrittenByPyTorch) {
  if (!test::python_torch_available()) GTEST_SKIP() << "no /usr/bin/python3 with torch";
  test::TempDir dir;
  std::string output;
  ASSERT_EQ(test::run_python_script("make_torchscript_models.py", "archives " + dir.path().string(),
                                    &output),
            0)
      << output;
  auto read = [&](const std::string& name) { return test::read_text(dir / name); };
  auto check = [&](const std::string& bytes, const std::string& name) {
    return check_torchscript_archive(reinterpret_cast<const unsigned char*>(bytes.data()),
                                     bytes.size(), name, default_operator_policy());
  };
  for (const char* name : {"scripted.ts", "traced.ts"}) {
    const TorchScriptCheck ok = check(read(name), name);
    EXPECT_TRUE(ok.operators.count("aten::conv2d") || ok.operators.count("aten::_convolution"))
        << name;
    EXPECT_FALSE(ok.code_files.empty());
  }
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"calls_save.ts", "aten::save"},
      {"calls_from_file.ts", "aten::from_file"},
      {"custom_op.ts", "namespace 'nad_test_ops'"}};
  for (const auto& [name, expected] : refused) {
    const std::string message = refusal([&] { check(read(name), name); });
    EXPECT_NE(message.find(expected), std::string::npos) << name << ": " << message;
    EXPECT_NE(message.find("code/"), std::string::npos) << message;  // the file inside
  }
  const std::string good = read("scripted.ts");
  EXPECT_NE(
      refusal([&] { check(good.substr(0, good.size() / 2), "truncated.ts"); }).find("truncated"),
      std::string::npos);
  // A flipped byte inside a code file: its deflate stream or its CRC no longer checks out.
  std::string tampered = good;
  const zip::Reader archive(reinterpret_cast<const unsigned char*>(good.data()), good.size(),
                            "scripted.ts", true);
  const zip::Entry* entry = archive.find("scripted/code/__torch__.py");
  ASSERT_NE(entry, nullptr);
  ASSERT_TRUE(entry->deflated);
  const size_t at = entry->offset + entry->stored_size / 2;
  tampered[at] = static_cast<char>(tampered[at] ^ 0x55);
  EXPECT_FALSE(refusal([&] { check(tampered, "tampered.ts"); }).empty());
}

}  // namespace
}  // namespace nad::io
