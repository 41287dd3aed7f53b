#include "nad/io/pickle.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::io::pickle {
namespace {

const std::filesystem::path kFixtures = std::filesystem::path(NAD_FIXTURES_DIR) / "checkpoints";

// A string literal with embedded NUL bytes.
#define BYTES(literal) std::string(literal, sizeof(literal) - 1)

std::vector<unsigned char> bytes_of(const std::string& text) {
  return std::vector<unsigned char>(text.begin(), text.end());
}

// Runs one pickle; the unpickler stays alive for inspection.
struct Loaded {
  std::vector<unsigned char> data;
  std::unique_ptr<Unpickler> unpickler;
  uint32_t root = 0;
  const Value& at(uint32_t i) const { return unpickler->at(i); }
  const Value& root_value() const { return at(root); }
  // The dict entry under a string key.
  const Value& get(const Value& dict, const std::string& key) const {
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
      if (at(dict.items[i]).text == key) return at(dict.items[i + 1]);
    }
    throw std::runtime_error("no key " + key);
  }
};

Loaded load(std::vector<unsigned char> data) {
  Loaded out;
  out.data = std::move(data);
  out.unpickler = std::make_unique<Unpickler>(out.data.data(), out.data.size(), "test.pkl");
  size_t offset = 0;
  out.root = out.unpickler->load(offset);
  EXPECT_EQ(offset, out.data.size());
  return out;
}

TEST(Pickle, ReadsEveryProtocolThatPythonWrites) {
  for (int protocol = 0; protocol <= 5; ++protocol) {
    SCOPED_TRACE("protocol " + std::to_string(protocol));
    Loaded p = load(read_file_bytes(kFixtures / ("plain_p" + std::to_string(protocol) + ".pkl")));
    const Value& d = p.root_value();
    ASSERT_EQ(d.kind, Kind::kDict);
    EXPECT_EQ(p.get(d, "int").integer, 1);
    EXPECT_EQ(p.get(d, "neg").integer, -300);
    EXPECT_EQ(p.get(d, "i32").integer, 70000);
    EXPECT_EQ(p.get(d, "i64").integer, -(int64_t{1} << 40));
    EXPECT_TRUE(p.get(d, "big").big);
    EXPECT_EQ(p.get(d, "float").kind, Kind::kFloat);
    EXPECT_DOUBLE_EQ(p.get(d, "float").real, -3.25);
    EXPECT_EQ(p.get(d, "str").text, "h\xc3\xa9llo");
    EXPECT_EQ(p.get(d, "bytes").kind, Kind::kBytes);
    EXPECT_EQ(p.get(d, "bytes").text, "xyz");
    const Value& list = p.get(d, "list");
    ASSERT_EQ(list.kind, Kind::kList);
    ASSERT_EQ(list.items.size(), 3u);
    EXPECT_EQ(p.at(list.items[2]).kind, Kind::kTuple);
    EXPECT_EQ(p.at(p.at(list.items[2]).items[1]).integer, 4);
    EXPECT_EQ(p.get(d, "tuple1").items.size(), 1u);
    EXPECT_EQ(p.get(d, "set").kind, Kind::kSet);
    EXPECT_EQ(p.at(p.get(d, "set").items.at(0)).integer, 5);
    EXPECT_EQ(p.get(d, "frozenset").kind, Kind::kSet);
    EXPECT_EQ(p.get(d, "none").kind, Kind::kNone);
    EXPECT_EQ(p.get(d, "true").kind, Kind::kBool);
    EXPECT_EQ(p.get(d, "true").integer, 1);
    EXPECT_EQ(p.get(d, "false").integer, 0);
    EXPECT_EQ(p.get(p.get(p.get(d, "nested"), "a"), "b").kind, Kind::kList);
    const Value& od = p.get(d, "od");
    ASSERT_EQ(od.kind, Kind::kDict);
    EXPECT_EQ(p.get(od, "z").integer, 1);
    // The memo shares one list between two keys.
    EXPECT_EQ(&p.get(d, "shared1"), &p.get(d, "shared2"));
  }
}

TEST(Pickle, HandWrittenOpcodes) {
  // Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, BINGET, LONG_BINGET, TUPLE1-3, LONG1,
  // BINFLOAT, NEWTRUE, EMPTY_SET/ADDITEMS, DUP, POP, POP_MARK.
  std::string s;
  s += BYTES("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00");  // PROTO 4, FRAME 0
  s += "}\x94(";                                               // {} memo 0, MARK
  s += "\x8c\x01"
       "a"
       "\x94";                 // 'a' memo 1
  s += "K\x01K\x02K\x03\x87";  // (1, 2, 3)
  s += BYTES(
      "\x8c\x01"
      "b"
      "\x8a\x02\x00\xff");  // 'b': LONG1 -256
  s += BYTES(
      "\x8c\x01"
      "c"
      "G\x3f\xf8\x00\x00\x00\x00\x00\x00");  // 'c': 1.5
  s += BYTES(
      "\x8c\x01"
      "d"
      "h\x01"
      "j\x01\x00\x00\x00\x86");  // 'd': ('a', 'a')
  s += "\x8c\x01"
       "e"
       "\x8f(K\x07\x90";  // 'e': {7}
  s += "\x8c\x01"
       "f"
       "\x88"
       "2"
       "0"
       "(K\x05"
       "1";  // 'f': True (DUP, POP, MARK..POP_MARK)
  s += "u.";
  Loaded p = load(bytes_of(s));
  const Value& d = p.root_value();
  ASSERT_EQ(d.kind, Kind::kDict);
  EXPECT_EQ(p.get(d, "a").items.size(), 3u);
  EXPECT_EQ(p.get(d, "b").integer, -256);
  EXPECT_DOUBLE_EQ(p.get(d, "c").real, 1.5);
  EXPECT_EQ(p.at(p.get(d, "d").items[1]).text, "a");
  EXPECT_EQ(p.at(p.get(d, "e").items[0]).integer, 7);
  EXPECT_EQ(p.get(d, "f").kind, Kind::kBool);
}

TEST(Pickle, GlobalsAreNeverCalledButNamed) {
  // os.system('touch ...'), protocol 0 and 2.
  for (const std::string s : {std::string("cposix\nsystem\n(S'touch /tmp/x'\ntR."),
                              BYTES("\x80\x02"
                                    "c__builtin__\neval\nX\x01\x00\x00\x00"
                                    "1\x85R.")}) {
    Loaded p = load(bytes_of(s));
    const Value& v = p.root_value();
    EXPECT_EQ(v.kind, Kind::kObject);
    EXPECT_FALSE(v.allowed);
    EXPECT_TRUE(v.text == "posix.system" || v.text == "builtins.eval") << v.text;
  }
  // STACK_GLOBAL and NEWOBJ on an unknown class, then BUILD.
  Loaded p = load(bytes_of(std::string("\x80\x04\x8c\x03PIL\x8c\x05Image\x93)\x81}b.")));
  EXPECT_EQ(p.root_value().text, "PIL.Image");
  EXPECT_FALSE(p.root_value().allowed);
  // An allowlisted global: OrderedDict() is a dict.
  Loaded od =
      load(bytes_of("\x80\x02"
                    "ccollections\nOrderedDict\n)R."));
  EXPECT_EQ(od.root_value().kind, Kind::kDict);
}

void expect_refused(const std::string& s, const std::string& message_part) {
  std::vector<unsigned char> data = bytes_of(s);
  Unpickler unpickler(data.data(), data.size(), "bad.pkl");
  size_t offset = 0;
  try {
    unpickler.load(offset);
    ADD_FAILURE() << "accepted: " << message_part;
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.pkl"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
  }
}

TEST(Pickle, MalformedInputIsAUserError) {
  expect_refused("", "end of data");
  expect_refused("\x80\x02}", "end of data");  // no STOP
  expect_refused(
      "\x80\x02X\xff\xff\xff\x7f"
      "abc.",
      "end of data");  // 2 GB string claimed
  expect_refused(std::string("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", 12), "end of data");
  expect_refused("\x80\x02j\xff\xff\xff\x7f.", "memo index");  // absurd LONG_BINGET
  expect_refused("\x80\x02h\x05.", "memo index");
  expect_refused("\x80\x09N.", "protocol");
  expect_refused("\x80\x02u.", "MARK");
  expect_refused("\x80\x02K\x01K\x02s.", "underflow");
  expect_refused(
      "\x80\x02K\x01"
      "a.",
      "underflow");
  expect_refused(
      "\x80\x02K\x01K\x02"
      "a.",
      "APPEND on a int");
  expect_refused("\x80\x02\xff.", "unknown opcode");
  expect_refused("\x80\x02\x82\x01.", "extension");
  expect_refused("cposix\nsys", "unterminated");
  expect_refused(BYTES("\x80\x02(X\x07\x00\x00\x00storageK\x01tQ."), "persistent id");
  expect_refused(BYTES("\x80\x02(X\x04\x00\x00\x00"
                       "evilK\x01tQ."),
                 "unknown persistent id");
  expect_refused("\x80\x02Ifoo\n.", "bad INT");
  expect_refused("\x80\x02I99999999999999999999999\n.", "bad INT");
}

TEST(Pickle, DeepNestingAndCyclesStayBounded) {
  // 200,000 nested lists: the reader has no recursion, so nothing overflows.
  std::string s = "\x80\x02";
  for (int i = 0; i < 200000; ++i) s += "]";
  for (int i = 0; i < 199999; ++i) s += "a";
  s += ".";
  Loaded p = load(bytes_of(s));
  EXPECT_EQ(p.root_value().kind, Kind::kList);
  // A list that contains itself.
  Loaded cycle =
      load(bytes_of(BYTES("\x80\x02]q\x00h\x00"
                          "a.")));
  EXPECT_EQ(cycle.root_value().items.at(0), cycle.root);
}

}  // namespace
}  // namespace nad::io::pickle
