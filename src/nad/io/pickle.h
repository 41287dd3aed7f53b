#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

// A pickle reader for the files torch.save writes (protocols 0 to 5), that never runs code.
//
// Python's unpickler imports and calls any global a file names (`posix.system`,
// `builtins.eval`, ...). This one only interprets a fixed allowlist of globals with known,
// side-effect-free meaning (OrderedDict, torch's tensor-rebuild functions and storage
// classes, torch.Size, sets, and numpy's array constructors, which become inert data). Every
// other global becomes an inert placeholder that records its name; what to do with
// placeholders is the caller's decision. Every length, index and count is checked against
// the real input before anything is allocated, so a malformed or hostile file ends in a
// UserError, never in a crash, a hang or a huge allocation.
namespace nad::io::pickle {

enum class Kind : uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kBytes,
  kTuple,
  kList,
  kDict,  // items: key, value, key, value, ... (a repeated key: the last one wins)
  kSet,
  kGlobal,   // a reference to a global, not called: text is "module.name"
  kObject,   // the inert result of calling/instantiating a global: text is its name, items the
             // arguments and any state given to it
  kStorage,  // a torch storage (persistent id); integer indexes Unpickler::storages()
  kTensor,   // a torch tensor; integer indexes Unpickler::tensors()
};

const char* kind_name(Kind kind);

struct Value {
  Kind kind = Kind::kNone;
  // kGlobal / kObject: the global is on the allowlist (false: an unknown or unsafe global).
  bool allowed = true;
  bool big = false;     // kInt: did not fit in 64 bits (then `text` holds the raw bytes)
  int64_t integer = 0;  // kBool, kInt; kStorage / kTensor: index
  double real = 0;      // kFloat
  std::string text;     // kString (UTF-8), kBytes (up to kKeptBytes), kGlobal, kObject
  uint64_t length = 0;  // kBytes: the real length (content beyond kKeptBytes is dropped)
  std::vector<uint32_t> items;
};

// A storage named by a persistent id ('storage', StorageClass, key, location, numel[, view]).
struct StorageRef {
  std::string key;
  at::ScalarType dtype = at::kFloat;
  int64_t numel = 0;        // elements the file says the storage holds
  int64_t view_offset = 0;  // legacy views: first element of the root storage
  int64_t view_numel = -1;  // legacy views: length; -1 for the whole storage
};

// _rebuild_tensor_v2(storage, storage_offset, size, stride, ...): geometry only; the data is
// read and checked when the tensor is materialised.
struct TensorRef {
  uint32_t storage = 0;  // index into storages()
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
};

class Unpickler {
 public:
  // `where` names the file in errors.
  Unpickler(const unsigned char* data, size_t size, std::string where);

  // Runs the pickle that starts at `offset` up to its STOP and returns its value; `offset`
  // moves past it. Several pickles in one buffer (the legacy format) share values and storages.
  uint32_t load(size_t& offset);

  const Value& at(uint32_t index) const { return values_.at(index); }
  const std::vector<StorageRef>& storages() const { return storages_; }
  const std::vector<TensorRef>& tensors() const { return tensors_; }

  // Small content kept for kBytes values; longer byte strings only keep their length.
  static constexpr size_t kKeptBytes = 256;
  // Most values one buffer may create (each costs ~100 bytes of memory), most container items
  // copied by calls such as set(list), and the longest global name.
  static constexpr size_t kMaxValues = 10'000'000;
  static constexpr uint64_t kMaxCopiedItems = 50'000'000;
  static constexpr size_t kMaxName = 1000;

 private:
  uint32_t add(Value value);
  void charge(size_t items);  // counts copied items against kMaxCopiedItems
  [[noreturn]] void fail(const std::string& why) const;
  uint32_t call(uint32_t callable, uint32_t args);
  uint32_t instantiate(uint32_t cls, uint32_t args);
  uint32_t persistent_load(uint32_t pid);
  uint32_t make_global(const std::string& module, const std::string& name);

  const unsigned char* data_;
  size_t size_;
  std::string where_;
  size_t pos_ = 0;         // of the opcode being run (for messages)
  size_t opcode_pos_ = 0;  // idem
  std::vector<Value> values_;
  std::vector<StorageRef> storages_;
  std::unordered_map<std::string, uint32_t> storage_by_key_;
  std::vector<TensorRef> tensors_;
  uint64_t copied_items_ = 0;
};

// The dtype of a torch storage class ("torch.FloatStorage" -> Float), or false.
bool storage_class_dtype(const std::string& name, at::ScalarType& dtype);
// The storage class torch.save names for a dtype ("FloatStorage"); throws for others.
std::string storage_class_name(at::ScalarType dtype);

// Writes the pickles nad exports (protocol 2, as torch.save by default).
class Pickler {
 public:
  Pickler();
  std::vector<unsigned char>& bytes() { return out_; }

  void op(unsigned char opcode) { out_.push_back(opcode); }
  void integer(int64_t value);
  void string(const std::string& text);  // BINUNICODE
  void global(const std::string& module, const std::string& name);
  void boolean(bool value) { op(value ? 0x88 : 0x89); }
  void none() { op('N'); }
  void mark() { op('('); }
  // Pops `count` (0-3) values or, for any other count, everything down to the last mark.
  void tuple(size_t count);
  void stop() { op('.'); }

 private:
  std::vector<unsigned char> out_;
};

}  // namespace nad::io::pickle
