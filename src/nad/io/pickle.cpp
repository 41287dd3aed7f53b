#include "nad/io/pickle.h"

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "nad/util/error.h"

namespace nad::io::pickle {

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kTuple:
      return "tuple";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kSet:
      return "set";
    case Kind::kGlobal:
      return "global";
    case Kind::kObject:
      return "object";
    case Kind::kStorage:
      return "storage";
    case Kind::kTensor:
      return "tensor";
  }
  return "?";
}

namespace {

struct StorageClass {
  const char* name;
  at::ScalarType dtype;
};
constexpr StorageClass kStorageClasses[] = {
    {"FloatStorage", at::kFloat},
    {"DoubleStorage", at::kDouble},
    {"HalfStorage", at::kHalf},
    {"BFloat16Storage", at::kBFloat16},
    {"LongStorage", at::kLong},
    {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort},
    {"CharStorage", at::kChar},
    {"ByteStorage", at::kByte},
    {"BoolStorage", at::kBool},
    {"ComplexFloatStorage", at::kComplexFloat},
    {"ComplexDoubleStorage", at::kComplexDouble},
    {"UntypedStorage", at::kByte},
};

// Globals with a meaning here. Anything not listed becomes a placeholder (allowed = false).
enum class Builtin {
  kNone,   // not on the allowlist
  kInert,  // allowed; calling it gives an inert object (numpy arrays, slices, devices)
  kOrderedDict,
  kRebuildTensor,
  kRebuildParameter,
  kRebuildFromType,
  kIdentity,  // torch.jit._pickle.build_*list, restore_type_tag
  kSize,      // torch.Size(tuple) -> tuple
  kSet,
  kEncode,  // _codecs.encode(str, 'latin1'): how protocol 2 pickles bytes
  kBytearray,
  kTypeOnly,  // storage classes, torch.Tensor, Parameter: referenced, never called
};

Builtin classify(const std::string& name) {
  static const std::unordered_map<std::string, Builtin> table = {
      {"collections.OrderedDict", Builtin::kOrderedDict},
      {"torch._utils._rebuild_tensor", Builtin::kRebuildTensor},
      {"torch._utils._rebuild_tensor_v2", Builtin::kRebuildTensor},
      {"torch._utils._rebuild_parameter", Builtin::kRebuildParameter},
      {"torch._utils._rebuild_parameter_with_state", Builtin::kRebuildParameter},
      {"torch._tensor._rebuild_from_type_v2", Builtin::kRebuildFromType},
      {"torch.jit._pickle.build_intlist", Builtin::kIdentity},
      {"torch.jit._pickle.build_doublelist", Builtin::kIdentity},
      {"torch.jit._pickle.build_boollist", Builtin::kIdentity},
      {"torch.jit._pickle.build_tensorlist", Builtin::kIdentity},
      {"torch.jit._pickle.build_genericlist", Builtin::kIdentity},
      {"torch.jit._pickle.restore_type_tag", Builtin::kIdentity},
      {"torch.Size", Builtin::kSize},
      {"torch.device", Builtin::kInert},
      {"torch.Tensor", Builtin::kTypeOnly},
      {"torch.nn.parameter.Parameter", Builtin::kTypeOnly},
      {"builtins.set", Builtin::kSet},
      {"builtins.frozenset", Builtin::kSet},
      {"builtins.slice", Builtin::kInert},
      {"builtins.bytearray", Builtin::kBytearray},
      {"_codecs.encode", Builtin::kEncode},
      {"numpy.core.multiarray._reconstruct", Builtin::kInert},
      {"numpy.core.multiarray.scalar", Builtin::kInert},
      {"numpy._core.multiarray._reconstruct", Builtin::kInert},
      {"numpy._core.multiarray.scalar", Builtin::kInert},
      {"numpy.ndarray", Builtin::kInert},
      {"numpy.dtype", Builtin::kInert},
  };
  auto it = table.find(name);
  if (it != table.end()) return it->second;
  at::ScalarType dtype;
  if (storage_class_dtype(name, dtype)) return Builtin::kTypeOnly;
  return Builtin::kNone;
}

// UTF-8 to the bytes of its code points (each must be < 256), as str.encode('latin1').
bool utf8_to_latin1(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < in.size()) {
      const unsigned code = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(in[i + 1]) & 0x3Fu);
      if (code > 0xFF) return false;
      out.push_back(static_cast<char>(code));
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out.push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code >> 6)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((code >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

// Protocol 0's UNICODE argument (raw-unicode-escape: latin-1 bytes and backslash-u or -U
// escapes) to UTF-8; false when malformed.
bool raw_unicode_escape(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == '\\' && i + 1 < in.size() && (in[i + 1] == 'u' || in[i + 1] == 'U')) {
      const size_t digits = in[i + 1] == 'u' ? 4 : 8;
      if (i + 2 + digits > in.size()) return false;
      uint32_t code = 0;
      for (size_t d = 0; d < digits; ++d) {
        const char h = in[i + 2 + d];
        const int v = h >= '0' && h <= '9'   ? h - '0'
                      : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                             : -1;
        if (v < 0) return false;
        code = (code << 4) | static_cast<uint32_t>(v);
      }
      if (code > 0x10FFFF) return false;
      append_utf8(out, code);
      i += 1 + digits;
    } else {
      append_utf8(out, c);
    }
  }
  return true;
}

}  // namespace

bool storage_class_dtype(const std::string& name, at::ScalarType& dtype) {
  const char* prefixes[] = {"torch.", "torch.cuda.", "torch.storage."};
  for (const char* prefix : prefixes) {
    const size_t n = std::strlen(prefix);
    if (name.compare(0, n, prefix) != 0) continue;
    const std::string rest = name.substr(n);
    for (const auto& entry : kStorageClasses) {
      if (rest == entry.name) {
        dtype = entry.dtype;
        return true;
      }
    }
  }
  return false;
}

std::string storage_class_name(at::ScalarType dtype) {
  for (const auto& entry : kStorageClasses) {
    if (entry.dtype == dtype) return entry.name;
  }
  throw UserError(std::string("cannot save tensors of dtype ") + c10::toString(dtype));
}

Unpickler::Unpickler(const unsigned char* data, size_t size, std::string where)
    : data_(data), size_(size), where_(std::move(where)) {}

void Unpickler::fail(const std::string& why) const {
  throw UserError("'" + where_ + "' is not a readable torch.save pickle: " + why + " (byte " +
                  std::to_string(opcode_pos_) + ")");
}

void Unpickler::charge(size_t items) {
  copied_items_ += items;
  if (copied_items_ > kMaxCopiedItems) fail("too many objects");
}

uint32_t Unpickler::add(Value value) {
  if (values_.size() >= kMaxValues) fail("too many objects");
  values_.push_back(std::move(value));
  return static_cast<uint32_t>(values_.size() - 1);
}

uint32_t Unpickler::make_global(const std::string& module, const std::string& name) {
  // Python 2 module names, renamed as Python's unpickler does (fix_imports) for protocol < 3:
  // `__builtin__.eval` is builtins.eval, `commands.Popen` is subprocess.Popen.
  static const std::unordered_map<std::string, std::string> renamed = {
      {"__builtin__", "builtins"}, {"exceptions", "builtins"}, {"copy_reg", "copyreg"},
      {"commands", "subprocess"},  {"cPickle", "pickle"},      {"UserDict", "collections"},
      {"UserList", "collections"}, {"Queue", "queue"},         {"urllib2", "urllib.request"}};
  if (module.size() + name.size() > kMaxName) fail("global name too long");
  auto it = renamed.find(module);
  Value v;
  v.kind = Kind::kGlobal;
  v.text = (it == renamed.end() ? module : it->second) + "." + name;
  v.allowed = classify(v.text) != Builtin::kNone;
  return add(std::move(v));
}

namespace {
bool is_str(const Value& v, const char* text) {
  return (v.kind == Kind::kString || v.kind == Kind::kBytes) && v.text == text;
}
}  // namespace

uint32_t Unpickler::persistent_load(uint32_t pid_index) {
  if (values_[pid_index].kind != Kind::kTuple || values_[pid_index].items.empty() ||
      values_[pid_index].items.size() > 6) {
    fail("persistent id is not a short tuple");
  }
  const Value pid = values_[pid_index];  // a copy (add() may move values_); at most 6 items
  if (!is_str(values_[pid.items[0]], "storage")) {
    // torch's legacy whole-module pickles use ('module', cls, file, source): keep the class so
    // that the placeholder names it; anything else is unknown.
    if (is_str(values_[pid.items[0]], "module") && pid.items.size() >= 2) return pid.items[1];
    fail("unknown persistent id");
  }
  if (pid.items.size() != 5 && pid.items.size() != 6) fail("malformed storage persistent id");
  const Value& type = values_[pid.items[1]];
  const Value& key = values_[pid.items[2]];
  const Value& numel = values_[pid.items[4]];
  StorageRef ref;
  if (type.kind != Kind::kGlobal || !storage_class_dtype(type.text, ref.dtype)) {
    fail("persistent id names no storage class" +
         (type.kind == Kind::kGlobal ? " ('" + type.text + "')" : std::string()));
  }
  if (key.kind == Kind::kString || key.kind == Kind::kBytes) {
    ref.key = key.text;
  } else if (key.kind == Kind::kInt && !key.big) {
    ref.key = std::to_string(key.integer);
  } else {
    fail("storage key is not a string");
  }
  if (numel.kind != Kind::kInt || numel.big || numel.integer < 0) fail("bad storage size");
  ref.numel = numel.integer;

  auto intern = [&](StorageRef r, const std::string& name) -> uint32_t {
    auto it = storage_by_key_.find(name);
    if (it != storage_by_key_.end()) {
      const StorageRef& seen = storages_[it->second];
      if (seen.dtype != r.dtype || seen.numel != r.numel || seen.key != r.key ||
          seen.view_offset != r.view_offset || seen.view_numel != r.view_numel) {
        fail("storage '" + name + "' is described in two different ways");
      }
      return it->second;
    }
    storages_.push_back(std::move(r));
    storage_by_key_.emplace(name, static_cast<uint32_t>(storages_.size() - 1));
    return static_cast<uint32_t>(storages_.size() - 1);
  };
  uint32_t index = intern(ref, "\x01" + ref.key);
  if (pid.items.size() == 6 && values_[pid.items[5]].kind != Kind::kNone) {
    // Legacy view: (view_key, offset, size) in elements of the root storage.
    const Value& view = values_[pid.items[5]];
    if (view.kind != Kind::kTuple || view.items.size() != 3) fail("malformed storage view");
    const Value &view_key = values_[view.items[0]], &offset = values_[view.items[1]],
                &length = values_[view.items[2]];
    if (!(view_key.kind == Kind::kString || view_key.kind == Kind::kBytes) ||
        offset.kind != Kind::kInt || offset.big || length.kind != Kind::kInt || length.big ||
        offset.integer < 0 || length.integer < 0 || offset.integer > ref.numel ||
        length.integer > ref.numel - offset.integer) {
      fail("storage view outside its storage");
    }
    StorageRef view_ref = ref;
    view_ref.view_offset = offset.integer;
    view_ref.view_numel = length.integer;
    index = intern(view_ref, "\x02" + view_key.text);
  }
  Value v;
  v.kind = Kind::kStorage;
  v.integer = index;
  return add(std::move(v));
}

uint32_t Unpickler::instantiate(uint32_t cls_index, uint32_t args) {
  // cls.__new__(cls, *args) for NEWOBJ, INST, OBJ: an inert object (or an empty container).
  const Value& cls = values_[cls_index];
  Value v;
  if (cls.kind == Kind::kGlobal && classify(cls.text) == Builtin::kOrderedDict) {
    v.kind = Kind::kDict;
    return add(std::move(v));
  }
  if (cls.kind == Kind::kGlobal && classify(cls.text) == Builtin::kSet) {
    v.kind = Kind::kSet;
    return add(std::move(v));
  }
  v.kind = Kind::kObject;
  v.text =
      (cls.kind == Kind::kGlobal || cls.kind == Kind::kObject) ? cls.text : std::string("<call>");
  v.allowed = (cls.kind == Kind::kGlobal || cls.kind == Kind::kObject) && cls.allowed;
  v.items.push_back(args);
  return add(std::move(v));
}

uint32_t Unpickler::call(uint32_t callable_index, uint32_t args_index) {
  // _rebuild_from_type_v2(func, type, args, state) stands for func(*args): unwrapped a bounded
  // number of times instead of recursing.
  for (int unwrap = 0;; ++unwrap) {
    const Value& c = values_[callable_index];
    if (c.kind != Kind::kGlobal || classify(c.text) != Builtin::kRebuildFromType) break;
    const Value& a = values_[args_index];
    if (unwrap == 8) fail("_rebuild_from_type_v2 nested too deeply");
    if (a.kind != Kind::kTuple || a.items.size() < 3 || values_[a.items[2]].kind != Kind::kTuple) {
      fail("bad _rebuild_from_type_v2");
    }
    callable_index = a.items[0];
    args_index = a.items[2];
  }
  // Only the callable's name is copied (add() may move values_; names are short).
  const Kind callable_kind = values_[callable_index].kind;
  const bool named = callable_kind == Kind::kGlobal || callable_kind == Kind::kObject;
  const std::string callable_text = named ? values_[callable_index].text : std::string();
  const bool callable_allowed = values_[callable_index].allowed;
  const Builtin builtin = callable_kind == Kind::kGlobal ? classify(callable_text) : Builtin::kNone;
  auto args = [&]() -> const Value& { return values_[args_index]; };
  auto arg = [&](size_t i) -> const Value& { return values_[values_[args_index].items[i]]; };
  if (builtin != Builtin::kNone && args().kind != Kind::kTuple) fail("call arguments not a tuple");
  switch (builtin) {
    case Builtin::kOrderedDict: {
      Value v;
      v.kind = Kind::kDict;
      if (!args().items.empty()) {
        // OrderedDict([(key, value), ...])
        const Value& pairs = arg(0);
        if (pairs.kind != Kind::kList && pairs.kind != Kind::kTuple) fail("bad OrderedDict");
        charge(pairs.items.size());
        for (uint32_t p : pairs.items) {
          const Value& pair = values_[p];
          if ((pair.kind != Kind::kTuple && pair.kind != Kind::kList) || pair.items.size() != 2) {
            fail("bad OrderedDict item");
          }
          v.items.push_back(pair.items[0]);
          v.items.push_back(pair.items[1]);
        }
      }
      return add(std::move(v));
    }
    case Builtin::kRebuildTensor: {
      // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
      if (args().items.size() < 4) fail("_rebuild_tensor with too few arguments");
      const Value &storage = arg(0), &offset = arg(1), &sizes = arg(2), &strides = arg(3);
      if (storage.kind != Kind::kStorage) fail("tensor without a storage");
      if (offset.kind != Kind::kInt || offset.big || offset.integer < 0) {
        fail("bad tensor storage offset");
      }
      if (sizes.kind != Kind::kTuple || strides.kind != Kind::kTuple ||
          sizes.items.size() != strides.items.size() || sizes.items.size() > 64) {
        fail("bad tensor size or stride");
      }
      TensorRef t;
      t.storage = static_cast<uint32_t>(storage.integer);
      t.offset = offset.integer;
      for (size_t i = 0; i < sizes.items.size(); ++i) {
        const Value &size = values_[sizes.items[i]], &stride = values_[strides.items[i]];
        if (size.kind != Kind::kInt || size.big || size.integer < 0 || stride.kind != Kind::kInt ||
            stride.big || stride.integer < 0) {
          fail("bad tensor size or stride");
        }
        t.sizes.push_back(size.integer);
        t.strides.push_back(stride.integer);
      }
      tensors_.push_back(std::move(t));
      Value v;
      v.kind = Kind::kTensor;
      v.integer = static_cast<int64_t>(tensors_.size() - 1);
      return add(std::move(v));
    }
    case Builtin::kRebuildParameter:
      // (data, requires_grad, backward_hooks[, state]): the data tensor is what matters.
      if (args().items.empty() || arg(0).kind != Kind::kTensor) fail("parameter without a tensor");
      return args().items[0];
    case Builtin::kRebuildFromType:  // unwrapped above
      fail("bad _rebuild_from_type_v2");
    case Builtin::kIdentity:
      if (args().items.empty()) fail("missing argument");
      return args().items[0];
    case Builtin::kSize:
    case Builtin::kSet: {
      Value v;
      v.kind = builtin == Builtin::kSize ? Kind::kTuple : Kind::kSet;
      if (!args().items.empty()) {
        const Value& source = arg(0);
        if (source.kind != Kind::kList && source.kind != Kind::kTuple &&
            source.kind != Kind::kSet) {
          fail("bad torch.Size or set argument");
        }
        charge(source.items.size());
        v.items = source.items;
      }
      return add(std::move(v));
    }
    case Builtin::kEncode:
    case Builtin::kBytearray: {
      Value v;
      v.kind = Kind::kBytes;
      if (!args().items.empty()) {
        const Value& source = arg(0);
        if (source.kind == Kind::kString) {
          if (!utf8_to_latin1(source.text, v.text)) fail("bytes not encodable as latin-1");
          v.length = v.text.size();
          if (v.text.size() > kKeptBytes) v.text.resize(kKeptBytes);
        } else if (source.kind == Kind::kBytes) {
          v.text = source.text;
          v.length = source.length;
        }
      }
      return add(std::move(v));
    }
    case Builtin::kInert:
    case Builtin::kTypeOnly:
    case Builtin::kNone:
      break;
  }
  // Never called: an inert object that remembers what would have been called, and with what.
  Value v;
  v.kind = Kind::kObject;
  if (named) {
    v.text = callable_text;
    v.allowed = callable_allowed;
  } else {
    v.text = std::string("<call of a ") + kind_name(callable_kind) + ">";
    v.allowed = false;
  }
  v.items.push_back(args_index);
  return add(std::move(v));
}

uint32_t Unpickler::load(size_t& offset) {
  pos_ = offset;
  std::vector<uint32_t> stack;
  std::vector<size_t> marks;
  std::unordered_map<uint64_t, uint32_t> memo;

  auto need = [&](uint64_t n) {
    if (n > size_ - pos_) fail("unexpected end of data (truncated?)");
  };
  auto byte = [&]() {
    need(1);
    return data_[pos_++];
  };
  auto uint_le = [&](int n) {
    need(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
    pos_ += static_cast<size_t>(n);
    return v;
  };
  auto bytes = [&](uint64_t n) {
    need(n);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  };
  auto line = [&]() {
    const size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    if (pos_ >= size_) fail("unterminated line (truncated?)");
    std::string s(reinterpret_cast<const char*>(data_ + start), pos_ - start);
    ++pos_;
    return s;
  };
  auto pop = [&]() {
    if (stack.empty() || (!marks.empty() && stack.size() <= marks.back())) fail("stack underflow");
    const uint32_t v = stack.back();
    stack.pop_back();
    return v;
  };
  auto top = [&]() -> uint32_t {
    if (stack.empty() || (!marks.empty() && stack.size() <= marks.back())) fail("stack underflow");
    return stack.back();
  };
  auto pop_mark = [&]() {
    if (marks.empty()) fail("no MARK");
    std::vector<uint32_t> items(stack.begin() + static_cast<std::ptrdiff_t>(marks.back()),
                                stack.end());
    stack.resize(marks.back());
    marks.pop_back();
    return items;
  };
  auto push = [&](Value v) { stack.push_back(add(std::move(v))); };
  auto push_int = [&](int64_t i) {
    Value v;
    v.kind = Kind::kInt;
    v.integer = i;
    push(std::move(v));
  };
  auto push_text = [&](Kind kind, std::string text) {
    Value v;
    v.kind = kind;
    v.length = text.size();
    if (kind == Kind::kBytes && text.size() > kKeptBytes) text.resize(kKeptBytes);
    v.text = std::move(text);
    push(std::move(v));
  };
  // Byte strings can be large (numpy arrays beside the weights): skip what is not kept.
  auto push_bytes = [&](uint64_t n) {
    need(n);
    Value v;
    v.kind = Kind::kBytes;
    v.length = n;
    v.text.assign(reinterpret_cast<const char*>(data_ + pos_),
                  static_cast<size_t>(std::min<uint64_t>(n, kKeptBytes)));
    pos_ += static_cast<size_t>(n);
    push(std::move(v));
  };
  auto decimal = [&](const std::string& text, int64_t& out) {
    if (text.empty() || text.size() > 18) return false;  // no overflow
    size_t i = (text[0] == '-' || text[0] == '+') ? 1 : 0;
    if (i == text.size()) return false;
    int64_t v = 0;
    for (; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      v = v * 10 + (text[i] - '0');
    }
    out = text[0] == '-' ? -v : v;
    return true;
  };
  auto memo_get = [&](uint64_t index) {
    auto it = memo.find(index);
    if (it == memo.end()) fail("memo index " + std::to_string(index) + " was never stored");
    stack.push_back(it->second);
  };
  auto memo_put = [&](uint64_t index) { memo[index] = top(); };
  auto container = [&](uint32_t target, const std::vector<uint32_t>& items, Kind wanted,
                       const char* what) {
    Value& v = values_[target];
    if (v.kind == wanted || v.kind == Kind::kObject) {
      // On an inert object Python would call append/extend/__setitem__: keep the items.
      v.items.insert(v.items.end(), items.begin(), items.end());
    } else {
      fail(std::string(what) + " on a " + kind_name(v.kind));
    }
  };
  auto integer_value = [&](const std::string& raw) {
    // Little-endian two's complement of any length (LONG1, LONG4).
    Value v;
    v.kind = Kind::kInt;
    if (raw.empty()) return v;
    const bool negative = static_cast<unsigned char>(raw.back()) & 0x80;
    size_t used = raw.size();
    const unsigned char fill = negative ? 0xFF : 0x00;
    while (used > 8 && static_cast<unsigned char>(raw[used - 1]) == fill) --used;
    if (used > 8 || (used == 8 && raw.size() > 8 &&
                     ((static_cast<unsigned char>(raw[7]) & 0x80) != (negative ? 0x80 : 0)))) {
      v.big = true;
      v.text = raw;
      return v;
    }
    uint64_t bits = negative ? ~uint64_t{0} : 0;
    for (size_t i = 0; i < std::min<size_t>(used, 8); ++i) {
      bits &= ~(uint64_t{0xFF} << (8 * i));
      bits |= static_cast<uint64_t>(static_cast<unsigned char>(raw[i])) << (8 * i);
    }
    std::memcpy(&v.integer, &bits, sizeof bits);
    return v;
  };

  while (true) {
    opcode_pos_ = pos_;
    const unsigned char opcode = byte();
    switch (opcode) {
      case 0x80: {  // PROTO
        const unsigned char protocol = byte();
        if (protocol > 5) fail("unsupported pickle protocol " + std::to_string(protocol));
        break;
      }
      case 0x95:  // FRAME: a length hint only
        need(uint_le(8));
        break;
      case '.': {  // STOP
        const uint32_t result = pop();
        offset = pos_;
        return result;
      }
      // Integers, floats, constants.
      case 'J': {  // BININT
        const auto raw = static_cast<uint32_t>(uint_le(4));
        int32_t value;
        std::memcpy(&value, &raw, 4);
        push_int(value);
        break;
      }
      case 'K':  // BININT1
        push_int(byte());
        break;
      case 'M':  // BININT2
        push_int(static_cast<int64_t>(uint_le(2)));
        break;
      case 0x8a:  // LONG1
        push(integer_value(bytes(byte())));
        break;
      case 0x8b: {  // LONG4
        const auto raw = static_cast<uint32_t>(uint_le(4));
        int32_t n;
        std::memcpy(&n, &raw, 4);
        if (n < 0) fail("negative LONG4 length");
        push(integer_value(bytes(static_cast<uint64_t>(n))));
        break;
      }
      case 'I': {  // INT (text); "01"/"00" are True/False
        const std::string text = line();
        Value v;
        if (text == "01" || text == "00") {
          v.kind = Kind::kBool;
          v.integer = text == "01";
        } else {
          v.kind = Kind::kInt;
          if (!decimal(text, v.integer)) fail("bad INT");
        }
        push(std::move(v));
        break;
      }
      case 'L': {  // LONG (text)
        std::string text = line();
        if (!text.empty() && text.back() == 'L') text.pop_back();
        Value v;
        v.kind = Kind::kInt;
        if (!decimal(text, v.integer)) {
          v.big = true;
          v.text = text;
        }
        push(std::move(v));
        break;
      }
      case 'G': {  // BINFLOAT (big-endian)
        need(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | data_[pos_ + i];
        pos_ += 8;
        Value v;
        v.kind = Kind::kFloat;
        std::memcpy(&v.real, &bits, 8);
        push(std::move(v));
        break;
      }
      case 'F': {  // FLOAT (text)
        const std::string text = line();
        Value v;
        v.kind = Kind::kFloat;
        char* end = nullptr;
        v.real = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) fail("bad FLOAT");
        push(std::move(v));
        break;
      }
      case 'N':
        push(Value{});
        break;
      case 0x88:  // NEWTRUE
      case 0x89: {
        Value v;
        v.kind = Kind::kBool;
        v.integer = opcode == 0x88;
        push(std::move(v));
        break;
      }
      // Strings and bytes.
      case 'X':  // BINUNICODE
        push_text(Kind::kString, bytes(uint_le(4)));
        break;
      case 0x8c:  // SHORT_BINUNICODE
        push_text(Kind::kString, bytes(byte()));
        break;
      case 0x8d:  // BINUNICODE8
        push_text(Kind::kString, bytes(uint_le(8)));
        break;
      case 'V': {  // UNICODE (raw-unicode-escape text)
        std::string text;
        if (!raw_unicode_escape(line(), text)) fail("bad UNICODE");
        push_text(Kind::kString, std::move(text));
        break;
      }
      case 'T': {  // BINSTRING (Python 2 str, read as text like torch.load does)
        const auto raw = static_cast<uint32_t>(uint_le(4));
        int32_t n;
        std::memcpy(&n, &raw, 4);
        if (n < 0) fail("negative BINSTRING length");
        push_text(Kind::kString, bytes(static_cast<uint64_t>(n)));
        break;
      }
      case 'U':  // SHORT_BINSTRING
        push_text(Kind::kString, bytes(byte()));
        break;
      case 'S': {  // STRING (quoted text)
        std::string text = line();
        if (text.size() >= 2 && (text[0] == '\'' || text[0] == '"') && text.back() == text[0]) {
          text = text.substr(1, text.size() - 2);
        } else {
          fail("bad STRING");
        }
        push_text(Kind::kString, std::move(text));
        break;
      }
      case 'B':  // BINBYTES
        push_bytes(uint_le(4));
        break;
      case 'C':  // SHORT_BINBYTES
        push_bytes(byte());
        break;
      case 0x8e:  // BINBYTES8
      case 0x96:  // BYTEARRAY8
        push_bytes(uint_le(8));
        break;
      case 0x97:  // NEXT_BUFFER
      case 0x98:  // READONLY_BUFFER
        fail("out-of-band buffers are not used by torch.save");
      // Containers.
      case ']': {
        Value v;
        v.kind = Kind::kList;
        push(std::move(v));
        break;
      }
      case ')': {
        Value v;
        v.kind = Kind::kTuple;
        push(std::move(v));
        break;
      }
      case '}': {
        Value v;
        v.kind = Kind::kDict;
        push(std::move(v));
        break;
      }
      case 0x8f: {  // EMPTY_SET
        Value v;
        v.kind = Kind::kSet;
        push(std::move(v));
        break;
      }
      case 'l':     // LIST
      case 't':     // TUPLE
      case 0x91: {  // FROZENSET
        Value v;
        v.kind = opcode == 'l' ? Kind::kList : opcode == 't' ? Kind::kTuple : Kind::kSet;
        v.items = pop_mark();
        push(std::move(v));
        break;
      }
      case 'd': {  // DICT
        Value v;
        v.kind = Kind::kDict;
        v.items = pop_mark();
        if (v.items.size() % 2) fail("odd number of dict items");
        push(std::move(v));
        break;
      }
      case 0x85:  // TUPLE1
      case 0x86:  // TUPLE2
      case 0x87: {
        Value v;
        v.kind = Kind::kTuple;
        const int n = opcode - 0x84;
        v.items.resize(static_cast<size_t>(n));
        for (int i = n - 1; i >= 0; --i) v.items[static_cast<size_t>(i)] = pop();
        push(std::move(v));
        break;
      }
      case 'a': {  // APPEND
        const uint32_t item = pop();
        container(top(), {item}, Kind::kList, "APPEND");
        break;
      }
      case 'e': {  // APPENDS
        const std::vector<uint32_t> items = pop_mark();
        container(top(), items, Kind::kList, "APPENDS");
        break;
      }
      case 's': {  // SETITEM
        const uint32_t value = pop();
        const uint32_t key = pop();
        container(top(), {key, value}, Kind::kDict, "SETITEM");
        break;
      }
      case 'u': {  // SETITEMS
        const std::vector<uint32_t> items = pop_mark();
        if (items.size() % 2) fail("odd number of dict items");
        container(top(), items, Kind::kDict, "SETITEMS");
        break;
      }
      case 0x90: {  // ADDITEMS
        const std::vector<uint32_t> items = pop_mark();
        container(top(), items, Kind::kSet, "ADDITEMS");
        break;
      }
      // Stack manipulation.
      case '(':
        marks.push_back(stack.size());
        break;
      case '0':
        pop();
        break;
      case '1':
        pop_mark();
        break;
      case '2':
        stack.push_back(top());
        break;
      // Memo.
      case 'p': {  // PUT (text)
        int64_t index;
        if (!decimal(line(), index) || index < 0) fail("bad PUT");
        memo_put(static_cast<uint64_t>(index));
        break;
      }
      case 'q':
        memo_put(byte());
        break;
      case 'r':
        memo_put(uint_le(4));
        break;
      case 0x94:  // MEMOIZE
        memo_put(memo.size());
        break;
      case 'g': {  // GET (text)
        int64_t index;
        if (!decimal(line(), index) || index < 0) fail("bad GET");
        memo_get(static_cast<uint64_t>(index));
        break;
      }
      case 'h':
        memo_get(byte());
        break;
      case 'j':
        memo_get(uint_le(4));
        break;
      // Globals and calls: nothing is ever imported or called.
      case 'c': {  // GLOBAL
        const std::string module = line();
        const std::string name = line();
        stack.push_back(make_global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const uint32_t name = pop();
        const uint32_t module = pop();
        if (values_[name].kind != Kind::kString || values_[module].kind != Kind::kString) {
          fail("STACK_GLOBAL needs two strings");
        }
        stack.push_back(make_global(values_[module].text, values_[name].text));
        break;
      }
      case 'R': {  // REDUCE
        const uint32_t args = pop();
        const uint32_t callable = pop();
        stack.push_back(call(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ
        const uint32_t args = pop();
        const uint32_t cls = pop();
        stack.push_back(instantiate(cls, args));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();      // kwargs
        const uint32_t args = pop();
        const uint32_t cls = pop();
        stack.push_back(instantiate(cls, args));
        break;
      }
      case 'i': {  // INST
        const std::string module = line();
        const std::string name = line();
        Value args;
        args.kind = Kind::kTuple;
        args.items = pop_mark();
        const uint32_t args_index = add(std::move(args));
        stack.push_back(instantiate(make_global(module, name), args_index));
        break;
      }
      case 'o': {  // OBJ
        std::vector<uint32_t> items = pop_mark();
        if (items.empty()) fail("OBJ without a class");
        const uint32_t cls = items.front();
        Value args;
        args.kind = Kind::kTuple;
        args.items.assign(items.begin() + 1, items.end());
        const uint32_t args_index = add(std::move(args));
        stack.push_back(instantiate(cls, args_index));
        break;
      }
      case 'b': {  // BUILD: on an inert object, remember the state; elsewhere ignore it
        const uint32_t state = pop();
        Value& target = values_[top()];
        if (target.kind == Kind::kObject) target.items.push_back(state);
        break;
      }
      case 'Q': {  // BINPERSID
        const uint32_t pid = pop();
        stack.push_back(persistent_load(pid));
        break;
      }
      case 'P':
        fail("text persistent ids are not used by torch.save");
      case 0x82:
      case 0x83:
      case 0x84:
        fail("extension codes are not supported");
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", opcode);
        fail(std::string("unknown opcode ") + hex);
      }
    }
  }
}

Pickler::Pickler() {
  op(0x80);
  op(2);
}

void Pickler::integer(int64_t value) {
  if (value >= 0 && value < 256) {
    op('K');
    op(static_cast<unsigned char>(value));
  } else if (value >= 0 && value < 65536) {
    op('M');
    op(static_cast<unsigned char>(value));
    op(static_cast<unsigned char>(value >> 8));
  } else if (value >= INT32_MIN && value <= INT32_MAX) {
    op('J');
    const auto bits = static_cast<uint32_t>(static_cast<int32_t>(value));
    for (int i = 0; i < 4; ++i) op(static_cast<unsigned char>(bits >> (8 * i)));
  } else {
    op(0x8a);  // LONG1, 8 bytes of two's complement
    op(8);
    const auto bits = static_cast<uint64_t>(value);
    for (int i = 0; i < 8; ++i) op(static_cast<unsigned char>(bits >> (8 * i)));
  }
}

void Pickler::string(const std::string& text) {
  op('X');
  const auto n = static_cast<uint32_t>(text.size());
  for (int i = 0; i < 4; ++i) op(static_cast<unsigned char>(n >> (8 * i)));
  out_.insert(out_.end(), text.begin(), text.end());
}

void Pickler::global(const std::string& module, const std::string& name) {
  op('c');
  out_.insert(out_.end(), module.begin(), module.end());
  op('\n');
  out_.insert(out_.end(), name.begin(), name.end());
  op('\n');
}

void Pickler::tuple(size_t count) {
  if (count == 0) {
    op(')');
  } else if (count <= 3) {
    op(static_cast<unsigned char>(0x84 + count));
  } else {
    op('t');
  }
}

}  // namespace nad::io::pickle
