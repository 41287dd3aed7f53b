#include "nad/io/torch_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "nad/io/pickle.h"
#include "nad/io/zip_archive.h"
#include "nad/util/error.h"
#include "nad/util/files.h"
#include "support/temp_dir.h"
#include "support/user_error.h"

namespace nad::io {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = fs::path(NAD_FIXTURES_DIR) / "checkpoints";
// What the malicious fixtures would create if anything in them ran.
const fs::path kPwned = "/tmp/nad_checkpoint_fixture_pwned";

std::map<std::string, torch::Tensor> as_map(const TorchStateDict& state) {
  return std::map<std::string, torch::Tensor>(state.tensors.begin(), state.tensors.end());
}

using nad::test::expect_user_error;

TorchStateDict parse(const std::vector<unsigned char>& bytes, const std::string& where = "x.pt") {
  return parse_torch_state_dict(bytes.data(), bytes.size(), where);
}

// The values scripts/make_checkpoint_fixtures.py stored in dtypes_*.pt.
void expect_dtype_fixture(const TorchStateDict& state) {
  auto t = as_map(state);
  const torch::Tensor base = torch::arange(24, torch::kLong).reshape({4, 6});
  const std::vector<std::pair<std::string, torch::Dtype>> dtypes = {
      {"float16", torch::kHalf},      {"float32", torch::kFloat}, {"float64", torch::kDouble},
      {"bfloat16", torch::kBFloat16}, {"int8", torch::kChar},     {"int16", torch::kShort},
      {"int32", torch::kInt},         {"int64", torch::kLong},    {"uint8", torch::kByte},
      {"bool", torch::kBool}};
  for (const auto& [name, dtype] : dtypes) {
    SCOPED_TRACE(name);
    torch::Tensor x = dtype == torch::kBool   ? base.remainder(2).eq(1)
                      : dtype == torch::kByte ? base.to(dtype)
                                              : (base - 5).to(dtype);
    ASSERT_TRUE(t.count(name));
    EXPECT_EQ(t[name].scalar_type(), dtype);
    EXPECT_TRUE(t[name].equal(x));
    EXPECT_TRUE(t[name + "_t"].equal(x.t()));
    EXPECT_EQ(t[name + "_t"].strides(), c10::IntArrayRef({1, 6}));
    EXPECT_TRUE(t[name + "_slice"].equal(x.slice(0, 1).slice(1, 2, 5)));
    EXPECT_EQ(t[name + "_slice"].storage_offset(), 8);
  }
  EXPECT_TRUE(t["shared_a"].equal(torch::arange(10, torch::kFloat)));
  EXPECT_TRUE(t["shared_b"].equal(torch::arange(3, 7, torch::kFloat)));
  // One storage, as in the file.
  EXPECT_EQ(t["shared_b"].data_ptr<float>(), t["shared_a"].data_ptr<float>() + 3);
  EXPECT_EQ(t["scalar"].dim(), 0);
  EXPECT_FLOAT_EQ(t["scalar"].item<float>(), 3.5f);
  EXPECT_EQ(t["empty"].sizes(), c10::IntArrayRef({0, 3}));
}

TEST(TorchFile, ReadsEveryDtypeStrideAndSharedStorageInBothFormats) {
  for (const char* name :
       {"dtypes_zip.pt", "dtypes_legacy.pt", "dtypes_p4_zip.pt", "dtypes_p5_legacy.pt"}) {
    SCOPED_TRACE(name);
    const TorchStateDict state = read_torch_state_dict(kFixtures / name);
    EXPECT_EQ(state.format, std::string(name).find("legacy") != std::string::npos
                                ? TorchFormat::kLegacy
                                : TorchFormat::kZip);
    expect_dtype_fixture(state);
    EXPECT_TRUE(state.skipped_globals.empty());
  }
}

TEST(TorchFile, FindsTheWeightsInsideCommonWrappers) {
  const auto bare = as_map(read_torch_state_dict(kFixtures / "wrn16_zip.pt"));
  EXPECT_EQ(bare.size(), read_torch_state_dict(kFixtures / "wrn16_legacy.pt").tensors.size());
  EXPECT_TRUE(bare.at("block1.layer.0.conv1.weight")
                  .equal(as_map(read_torch_state_dict(kFixtures / "wrn16_legacy.pt"))
                             .at("block1.layer.0.conv1.weight")));
  const std::vector<std::pair<std::string, std::string>> wrapped = {
      {"wrn10_wrapped_zip.pt", "state_dict"},
      {"wrn10_module_legacy.pt", "net"},
      {"wrn10_params_zip.pt", "model_state_dict"},
      {"wrn10_attack_result.pt", "model"}};
  for (const auto& [file, container] : wrapped) {
    SCOPED_TRACE(file);
    const TorchStateDict state = read_torch_state_dict(kFixtures / file);
    EXPECT_EQ(state.container, container);
    EXPECT_GE(state.tensors.size(), 40u);
  }
  EXPECT_EQ(read_torch_state_dict(kFixtures / "wrn10_module_legacy.pt")
                .tensors[0]
                .first.rfind("module.", 0),
            0u);
}

TEST(TorchFile, RefusesCodeInsideTheWeightsAndNamesIt) {
  fs::remove(kPwned);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"evil_system_zip.pt", "posix.system"},
      {"evil_eval_legacy.pt", "builtins.eval"},
      {"evil_popen_zip.pt", "subprocess.Popen"},
      {"evil_unknown_zip.pt", "evilpkg.payload.Payload"}};
  for (const auto& [file, global] : cases) {
    SCOPED_TRACE(file);
    expect_user_error([&] { read_torch_state_dict(kFixtures / file); },
                      {file, "refusing to load", "'bias'", global});
  }
  // A pickled module (torch.save(model)) is refused the same way: nothing is instantiated.
  expect_user_error([&] { read_torch_state_dict(kFixtures / "pickled_module_zip.pt"); },
                    {"torch.nn.modules.linear.Linear", "state_dict()"});
  EXPECT_FALSE(fs::exists(kPwned));
}

TEST(TorchFile, SkipsAndNamesUnknownObjectsBesideTheWeights) {
  const TorchStateDict beside = read_torch_state_dict(kFixtures / "evil_beside_zip.pt");
  EXPECT_EQ(beside.skipped_globals, std::vector<std::string>{"posix.system"});
  EXPECT_EQ(beside.tensors.size(), 1u);

  // BackdoorBench's attack_result.pt: numpy arrays are inert data, the rest is named.
  const TorchStateDict result = read_torch_state_dict(kFixtures / "wrn10_attack_result.pt");
  EXPECT_EQ(
      result.skipped_globals,
      (std::vector<std::string>{"PIL.Image.Image", "utils.bd_dataset_v2.prepro_cls_DatasetBD_v2"}));
  EXPECT_FALSE(fs::exists(kPwned));
}

TEST(TorchFile, WritesWhatItReads) {
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> state = {
      {"w", torch::randn({3, 4})},
      {"t", torch::randn({4, 3}).t()},  // written contiguous
      {"h", torch::randn({5}).to(torch::kHalf)},
      {"b", torch::randn({5}).to(torch::kBFloat16)},
      {"n", torch::tensor(int64_t{7})},
      {"big", torch::tensor(int64_t{1} << 40)},
      {"flags", torch::tensor({true, false})},
      {"empty", torch::zeros({0})}};
  for (TorchFormat format : {TorchFormat::kZip, TorchFormat::kLegacy}) {
    const TorchStateDict read = parse(encode_torch_state_dict(state, format));
    EXPECT_EQ(read.format, format);
    ASSERT_EQ(read.tensors.size(), state.size());
    for (size_t i = 0; i < state.size(); ++i) {
      EXPECT_EQ(read.tensors[i].first, state[i].first);
      EXPECT_TRUE(read.tensors[i].second.equal(state[i].second)) << state[i].first;
    }
  }
  // The zip entries are aligned to 64 bytes as PyTorch's own writer does.
  const auto bytes = encode_torch_state_dict(state, TorchFormat::kZip);
  zip::Reader archive(bytes.data(), bytes.size(), "x.pt");
  for (const auto& entry : archive.entries()) EXPECT_EQ(entry.offset % 64, 0u) << entry.name;
  EXPECT_NE(archive.find("archive/data.pkl"), nullptr);
  EXPECT_NE(archive.find("archive/version"), nullptr);
}

TEST(TorchFile, TruncatedFilesAreUserErrors) {
  for (const char* name : {"dtypes_zip.pt", "dtypes_legacy.pt"}) {
    const std::vector<unsigned char> whole = read_file_bytes(kFixtures / name);
    for (size_t keep = 0; keep < whole.size(); keep += std::max<size_t>(1, whole.size() / 97)) {
      std::vector<unsigned char> cut(whole.begin(), whole.begin() + keep);
      EXPECT_THROW(parse(cut), UserError) << name << " cut at " << keep;
    }
    std::vector<unsigned char> cut(whole.begin(), whole.end() - 1);
    EXPECT_THROW(parse(cut), UserError) << name;
  }
}

// A zip-format file whose single tensor is described by hand.
std::vector<unsigned char> crafted_zip(int64_t storage_numel, size_t stored_bytes,
                                       std::vector<int64_t> sizes, std::vector<int64_t> strides,
                                       int64_t offset = 0) {
  pickle::Pickler p;
  p.global("collections", "OrderedDict");
  p.tuple(0);
  p.op('R');
  p.mark();
  p.string("w");
  p.global("torch._utils", "_rebuild_tensor_v2");
  p.mark();
  p.mark();
  p.string("storage");
  p.global("torch", "FloatStorage");
  p.string("0");
  p.string("cpu");
  p.integer(storage_numel);
  p.tuple(5);
  p.op('Q');
  p.integer(offset);
  p.mark();
  for (int64_t s : sizes) p.integer(s);
  p.op('t');
  p.mark();
  for (int64_t s : strides) p.integer(s);
  p.op('t');
  p.boolean(false);
  p.none();
  p.op('t');
  p.op('R');
  p.op('u');
  p.stop();
  zip::Writer writer;
  writer.add("archive/data.pkl", p.bytes().data(), p.bytes().size());
  std::vector<unsigned char> data(stored_bytes, 0);
  writer.add("archive/data/0", data.data(), data.size());
  return writer.finish();
}

TEST(TorchFile, AbsurdSizesAreRefusedWithoutAllocating) {
  EXPECT_NO_THROW(parse(crafted_zip(4, 16, {2, 2}, {2, 1})));
  // A storage shorter than it claims; one that claims 2^60 elements (4 EiB).
  expect_user_error([] { parse(crafted_zip(8, 16, {8}, {1})); }, {"x.pt", "shorter"});
  expect_user_error([] { parse(crafted_zip(int64_t{1} << 60, 16, {4}, {1})); }, {"shorter"});
  // A tensor reaching past its storage, by size, stride or offset; sizes that overflow.
  expect_user_error([] { parse(crafted_zip(4, 16, {5}, {1})); }, {"does not fit"});
  expect_user_error([] { parse(crafted_zip(4, 16, {2, 2}, {3, 1})); }, {"does not fit"});
  expect_user_error([] { parse(crafted_zip(4, 16, {4}, {1}, 1)); }, {"does not fit"});
  expect_user_error(
      [] {
        parse(crafted_zip(4, 16, {int64_t{1} << 62, int64_t{1} << 62}, {0, 0}));
      },
      {"does not fit"});
  expect_user_error([] { parse(crafted_zip(4, 16, {2}, {int64_t{1} << 62})); }, {"does not fit"});

  // Legacy: the storage header claims a terabyte.
  std::vector<std::pair<std::string, torch::Tensor>> state = {{"w", torch::ones({4})}};
  std::vector<unsigned char> legacy = encode_torch_state_dict(state, TorchFormat::kLegacy);
  const int64_t terabyte_elements = int64_t{1} << 38;
  std::memcpy(legacy.data() + legacy.size() - 16 - 8, &terabyte_elements, 8);
  expect_user_error([&] { parse(legacy); }, {"elements"});
}

TEST(TorchFile, MalformedArchivesAreUserErrors) {
  std::vector<std::pair<std::string, torch::Tensor>> state = {{"w", torch::ones({4})}};
  const std::vector<unsigned char> good = encode_torch_state_dict(state, TorchFormat::kZip);
  // Directory offset pointing past the end.
  std::vector<unsigned char> bad = good;
  const uint32_t far = 0x7fffffff;
  std::memcpy(bad.data() + bad.size() - 6, &far, 4);
  expect_user_error([&] { parse(bad); }, {"x.pt", "zip"});
  // A corrupted storage byte: the CRC no longer matches.
  bad = good;
  zip::Reader archive(good.data(), good.size(), "x.pt");
  bad[archive.find("archive/data/0")->offset] ^= 0xff;
  expect_user_error([&] { parse(bad); }, {"CRC"});
  // Not a checkpoint at all.
  expect_user_error([] { parse(std::vector<unsigned char>{'h', 'e', 'l', 'l', 'o'}); }, {"x.pt"});
  // A zip without data.pkl.
  zip::Writer writer;
  writer.add("a/b.txt", "hi", 2);
  expect_user_error([&] { parse(writer.finish()); }, {"data.pkl"});
}

TEST(TorchFile, RandomCorruptionNeverCrashes) {
  // A cheap stand-in for the fuzzer (fuzz/) in the normal suite.
  std::mt19937 random(1);
  for (const char* name : {"dtypes_zip.pt", "dtypes_legacy.pt", "evil_beside_zip.pt"}) {
    const std::vector<unsigned char> whole = read_file_bytes(kFixtures / name);
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<unsigned char> bytes = whole;
      const int flips = 1 + static_cast<int>(random() % 4);
      for (int f = 0; f < flips; ++f) bytes[random() % bytes.size()] = random() & 0xff;
      try {
        parse(bytes);
      } catch (const UserError&) {
      }
    }
  }
}

}  // namespace
}  // namespace nad::io

namespace nad::io {
namespace {

TEST(TorchFile, DeepNestingIsHarmless) {
  // 100,000 nested lists instead of a state_dict: read without recursion, then refused.
  pickle::Pickler p;
  for (int i = 0; i < 100000; ++i) p.op(']');
  for (int i = 0; i < 99999; ++i) p.op('a');
  p.stop();
  zip::Writer writer;
  writer.add("archive/data.pkl", p.bytes().data(), p.bytes().size());
  const std::vector<unsigned char> bytes = writer.finish();
  EXPECT_THROW(parse_torch_state_dict(bytes.data(), bytes.size(), "deep.pt"), UserError);
}

}  // namespace
}  // namespace nad::io
