#include "nad/io/torch_file.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "nad/io/pickle.h"
#include "nad/io/zip_archive.h"
#include "nad/util/error.h"
#include "nad/util/files.h"

namespace nad::io {

namespace {

using pickle::Kind;
using pickle::Value;

// torch.serialization.MAGIC_NUMBER (0x1950a86a20f9469cfc6c) as LONG1 stores it.
const std::string kLegacyMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
constexpr int64_t kLegacyProtocol = 1001;

// Where a storage's bytes are in the file buffer.
struct StorageBytes {
  const unsigned char* data = nullptr;
  uint64_t size = 0;
};

class Reader {
 public:
  Reader(const unsigned char* data, size_t size, std::string where)
      : data_(data), size_(size), where_(std::move(where)), unpickler_(data, size, where_) {}

  TorchStateDict read();

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw UserError("'" + where_ + "': " + why);
  }
  uint32_t read_zip();
  uint32_t read_legacy();
  torch::Tensor materialize(int64_t tensor_index);
  const Value& at(uint32_t i) const { return unpickler_.at(i); }
  const Value* dict_get(const Value& dict, const std::string& key) const;
  std::string describe(uint32_t index) const;
  // A list or tuple of numbers (ints or floats); `what` names it in errors.
  std::vector<double> numbers(const Value* list, const std::string& what) const;
  std::vector<std::string> unknown_globals(uint32_t root, uint32_t excluded) const;

  const unsigned char* data_;
  size_t size_;
  std::string where_;
  pickle::Unpickler unpickler_;
  TorchFormat format_ = TorchFormat::kZip;
  std::unique_ptr<zip::Reader> zip_;
  std::string zip_prefix_;
  std::unordered_map<std::string, StorageBytes> legacy_storages_;
  std::unordered_map<std::string, torch::Tensor> loaded_;  // root storage key -> 1-d tensor
};

uint32_t Reader::read_zip() {
  format_ = TorchFormat::kZip;
  zip_ = std::make_unique<zip::Reader>(data_, size_, where_);
  const zip::Entry* pickle_entry = nullptr;
  for (const zip::Entry& entry : zip_->entries()) {
    const std::string& name = entry.name;
    if (name == "data.pkl" ||
        (name.size() > 9 && name.compare(name.size() - 9, 9, "/data.pkl") == 0 &&
         std::count(name.begin(), name.end(), '/') == 1)) {
      pickle_entry = &entry;
      break;
    }
  }
  if (!pickle_entry) {
    fail("zip archive without data.pkl: not a torch.save file");
  }
  zip_prefix_ = pickle_entry->name.substr(0, pickle_entry->name.size() - 8);
  for (const zip::Entry& entry : zip_->entries()) {
    if (entry.name.rfind(zip_prefix_ + "code/", 0) == 0) {
      fail("is a TorchScript archive (torch.jit.save); save model.state_dict() with torch.save");
    }
  }
  if (const zip::Entry* order = zip_->find(zip_prefix_ + "byteorder")) {
    const std::string text(reinterpret_cast<const char*>(zip_->data(*order)), order->size);
    if (text != "little") fail("big-endian checkpoints are not supported");
  }
  pickle::Unpickler unpickler(zip_->data(*pickle_entry), pickle_entry->size, where_);
  unpickler_ = std::move(unpickler);
  size_t offset = 0;
  return unpickler_.load(offset);
}

uint32_t Reader::read_legacy() {
  format_ = TorchFormat::kLegacy;
  size_t offset = 0;
  const Value& magic = at(unpickler_.load(offset));
  if (magic.kind != Kind::kInt || !magic.big || magic.text != kLegacyMagic) {
    fail("not a torch.save file (no zip archive, no legacy magic number)");
  }
  const Value& protocol = at(unpickler_.load(offset));
  if (protocol.kind != Kind::kInt || protocol.integer != kLegacyProtocol) {
    fail("unsupported legacy protocol version");
  }
  const Value& info = at(unpickler_.load(offset));
  if (info.kind != Kind::kDict) fail("malformed legacy header");
  if (const Value* little = dict_get(info, "little_endian")) {
    if (little->kind == Kind::kBool && !little->integer) {
      fail("big-endian checkpoints are not supported");
    }
  }
  const uint32_t root = unpickler_.load(offset);
  const Value& keys = at(unpickler_.load(offset));
  if (keys.kind != Kind::kList && keys.kind != Kind::kTuple) fail("malformed storage key list");

  // Root storages by key, from the persistent ids of the main pickle.
  std::unordered_map<std::string, const pickle::StorageRef*> roots;
  for (const pickle::StorageRef& ref : unpickler_.storages()) {
    if (ref.view_numel < 0) roots.emplace(ref.key, &ref);
  }
  for (uint32_t k : keys.items) {
    const Value& key = at(k);
    if (key.kind != Kind::kString && key.kind != Kind::kBytes) fail("storage key not a string");
    auto it = roots.find(key.text);
    if (it == roots.end()) fail("storage '" + key.text + "' is not used by any tensor");
    if (legacy_storages_.count(key.text)) fail("storage '" + key.text + "' stored twice");
    if (size_ - offset < 8) fail("storage '" + key.text + "' is truncated");
    int64_t numel;
    std::memcpy(&numel, data_ + offset, 8);
    offset += 8;
    const pickle::StorageRef& ref = *it->second;
    if (numel != ref.numel) {
      fail("storage '" + key.text + "' holds " + std::to_string(numel) + " elements but " +
           std::to_string(ref.numel) + " were declared");
    }
    const uint64_t element = c10::elementSize(ref.dtype);
    const uint64_t bytes = static_cast<uint64_t>(numel) * element;  // numel < 2^63 / 16
    if (static_cast<uint64_t>(numel) > UINT64_MAX / 16 || bytes > size_ - offset) {
      fail("storage '" + key.text + "' is truncated (" + std::to_string(size_ - offset) +
           " bytes left, " + std::to_string(numel) + " elements declared)");
    }
    legacy_storages_[key.text] = {data_ + offset, bytes};
    offset += bytes;
  }
  return root;
}

torch::Tensor Reader::materialize(int64_t tensor_index) {
  const pickle::TensorRef& t = unpickler_.tensors().at(static_cast<size_t>(tensor_index));
  const pickle::StorageRef& s = unpickler_.storages().at(t.storage);
  const uint64_t element = c10::elementSize(s.dtype);

  torch::Tensor root;
  auto cached = loaded_.find(s.key);
  if (cached != loaded_.end()) {
    root = cached->second;
    if (root.scalar_type() != s.dtype || root.numel() != s.numel) {
      fail("storage '" + s.key + "' is used with two different types or sizes");
    }
  } else {
    StorageBytes bytes;
    if (format_ == TorchFormat::kZip) {
      const zip::Entry* entry = zip_->find(zip_prefix_ + "data/" + s.key);
      if (!entry) fail("storage '" + s.key + "' is missing from the archive");
      bytes = {zip_->data(*entry), entry->size};
    } else {
      auto it = legacy_storages_.find(s.key);
      if (it == legacy_storages_.end()) fail("storage '" + s.key + "' has no data");
      bytes = it->second;
    }
    // Compare with the real bytes before allocating anything of the claimed size.
    uint64_t needed;
    if (__builtin_mul_overflow(static_cast<uint64_t>(s.numel), element, &needed) ||
        needed > bytes.size) {
      fail("storage '" + s.key + "' holds " + std::to_string(bytes.size) +
           " bytes, shorter than the " + std::to_string(s.numel) + " elements of " +
           c10::toString(s.dtype) + " it declares (truncated?)");
    }
    root = torch::empty({s.numel}, torch::TensorOptions().dtype(s.dtype));
    if (s.numel > 0) std::memcpy(root.data_ptr(), bytes.data, s.numel * element);
    loaded_.emplace(s.key, root);
  }

  // Legacy views start inside the root storage; the tensor must fit in the view.
  const int64_t base = s.view_offset;
  const int64_t available = s.view_numel < 0 ? s.numel : s.view_numel;
  bool empty = false;
  for (int64_t size : t.sizes) empty = empty || size == 0;
  uint64_t last = static_cast<uint64_t>(t.offset);  // index of the last element touched
  bool overflow = false;
  for (size_t i = 0; i < t.sizes.size() && !empty; ++i) {
    uint64_t span;
    overflow = overflow || __builtin_mul_overflow(static_cast<uint64_t>(t.sizes[i] - 1),
                                                  static_cast<uint64_t>(t.strides[i]), &span);
    overflow = overflow || __builtin_add_overflow(last, span, &last);
  }
  int64_t numel = 1;
  for (int64_t size : t.sizes) overflow = overflow || __builtin_mul_overflow(numel, size, &numel);
  if (overflow || (!empty && last >= static_cast<uint64_t>(available)) ||
      (empty && t.offset > available)) {
    fail("a tensor of shape " + c10::str(c10::IntArrayRef(t.sizes)) + " at offset " +
         std::to_string(t.offset) + " does not fit in its storage '" + s.key + "' of " +
         std::to_string(available) + " elements");
  }
  return root.as_strided(t.sizes, t.strides, base + t.offset);
}

const Value* Reader::dict_get(const Value& dict, const std::string& key) const {
  const Value* found = nullptr;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const Value& k = at(dict.items[i]);
    if (k.kind == Kind::kString && k.text == key) found = &at(dict.items[i + 1]);
  }
  return found;
}

std::vector<double> Reader::numbers(const Value* list, const std::string& what) const {
  if (!list || (list->kind != Kind::kList && list->kind != Kind::kTuple)) {
    fail("'" + what + "' is missing or not a list of numbers");
  }
  std::vector<double> out;
  for (uint32_t item : list->items) {
    const Value& v = at(item);
    if (v.kind == Kind::kFloat) {
      out.push_back(v.real);
    } else if (v.kind == Kind::kInt && !v.big) {
      out.push_back(static_cast<double>(v.integer));
    } else {
      fail("'" + what + "' holds " + describe(item) + ", not a number");
    }
  }
  return out;
}

std::string Reader::describe(uint32_t index) const {
  const Value& v = at(index);
  if (v.kind == Kind::kObject || v.kind == Kind::kGlobal) {
    return std::string(v.kind == Kind::kObject ? "an object of " : "the global ") + v.text;
  }
  return std::string("a ") + pickle::kind_name(v.kind);
}

// Names of the non-allowlisted globals reachable from `root`, not entering `excluded`. The
// value graph can be cyclic (memo), hence the visited set; no recursion.
std::vector<std::string> Reader::unknown_globals(uint32_t root, uint32_t excluded) const {
  std::set<std::string> names;
  std::unordered_set<uint32_t> seen{excluded};
  std::vector<uint32_t> todo{root};
  while (!todo.empty()) {
    const uint32_t index = todo.back();
    todo.pop_back();
    if (!seen.insert(index).second) continue;
    const Value& v = at(index);
    if ((v.kind == Kind::kObject || v.kind == Kind::kGlobal) && !v.allowed) names.insert(v.text);
    todo.insert(todo.end(), v.items.begin(), v.items.end());
  }
  return {names.begin(), names.end()};
}

TorchStateDict Reader::read() {
  const uint32_t root_index = zip::looks_like_zip(data_, size_) ? read_zip() : read_legacy();
  TorchStateDict out;
  out.format = format_;

  // Find the weights: the dict itself, or a wrapper's state_dict/model/net/model_state_dict.
  static const char* kWrappers[] = {"state_dict", "model_state_dict", "model", "net"};
  uint32_t weights = root_index;
  for (int depth = 0; depth < 3; ++depth) {
    const Value& v = at(weights);
    if (v.kind != Kind::kDict) break;
    bool descended = false;
    for (const char* key : kWrappers) {
      for (size_t i = 0; i + 1 < v.items.size(); i += 2) {
        const Value& k = at(v.items[i]);
        if (k.kind != Kind::kString || k.text != key) continue;
        const Value& inner = at(v.items[i + 1]);
        if (inner.kind == Kind::kTensor) continue;  // a weight called "model", say
        if (inner.kind != Kind::kDict) {
          fail(std::string("'") + key + "' holds " + describe(v.items[i + 1]) +
               ", not a state_dict (nad never runs pickled code: save model.state_dict())");
        }
        if (depth == 0) {
          // nad's own model.pt says what it holds.
          if (const Value* arch = dict_get(v, "arch"); arch && arch->kind == Kind::kString) {
            out.arch = arch->text;
          }
          if (const Value* n = dict_get(v, "num_classes"); n && n->kind == Kind::kInt) {
            out.num_classes = n->integer;
          }
          const Value* shape = dict_get(v, "input_shape");
          if (shape && (shape->kind == Kind::kList || shape->kind == Kind::kTuple)) {
            std::vector<int64_t> dims;
            for (uint32_t d : shape->items) {
              if (at(d).kind == Kind::kInt) dims.push_back(at(d).integer);
            }
            out.input_shape = dims;
          }
          if (const Value* norm = dict_get(v, "input_norm"); norm && norm->kind == Kind::kDict) {
            if (const Value* name = dict_get(*norm, "name"); name && name->kind == Kind::kString) {
              out.input_norm_name = name->text;
            }
            out.input_norm_mean = numbers(dict_get(*norm, "mean"), "input_norm.mean");
            out.input_norm_std = numbers(dict_get(*norm, "std"), "input_norm.std");
          }
          for (auto [key, field] : {std::pair{"model_name", &out.record_model_name},
                                    std::pair{"clean_data", &out.record_dataset}}) {
            if (const Value* text = dict_get(v, key); text && text->kind == Kind::kString) {
              *field = text->text;
            }
          }
        }
        out.container = out.container.empty() ? key : out.container + "." + key;
        weights = v.items[i + 1];
        descended = true;
        break;
      }
      if (descended) break;
    }
    if (!descended) break;
  }
  const Value& dict = at(weights);
  if (dict.kind != Kind::kDict) {
    fail("holds " + describe(weights) +
         ", not a state_dict (nad never runs pickled code: save model.state_dict())");
  }

  std::map<std::string, size_t> position;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const Value& key = at(dict.items[i]);
    if (key.kind != Kind::kString) fail("a state_dict key is " + describe(dict.items[i]));
    const uint32_t value_index = dict.items[i + 1];
    const Value& value = at(value_index);
    if (value.kind != Kind::kTensor) {
      const std::vector<std::string> unknown = unknown_globals(value_index, UINT32_MAX);
      if (!unknown.empty()) {
        std::string names;
        for (const auto& name : unknown) names += (names.empty() ? "" : ", ") + name;
        fail("refusing to load: weight '" + key.text + "' is built by " + names +
             ", which nad never calls (not a tensor)");
      }
      fail("weight '" + key.text + "' is " + describe(value_index) + ", not a tensor");
    }
    torch::Tensor tensor = materialize(value.integer);
    auto it = position.find(key.text);
    if (it != position.end()) {
      out.tensors[it->second].second = tensor;  // a repeated key: the last one wins
    } else {
      position.emplace(key.text, out.tensors.size());
      out.tensors.emplace_back(key.text, tensor);
    }
  }
  out.skipped_globals = unknown_globals(root_index, weights);
  return out;
}

}  // namespace

TorchStateDict parse_torch_state_dict(const unsigned char* data, size_t size,
                                      const std::string& where) {
  Reader reader(data, size, where);
  try {
    return reader.read();
  } catch (const c10::Error& e) {
    // Not expected (every input is checked first); still a problem with the file.
    throw UserError("'" + where + "' could not be read: " + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw UserError("'" + where + "' could not be read: out of memory");
  }
}

TorchStateDict read_torch_state_dict(const std::filesystem::path& file) {
  const std::vector<unsigned char> bytes = read_file_bytes(file);
  return parse_torch_state_dict(bytes.data(), bytes.size(), file.string());
}

std::vector<unsigned char> encode_torch_state_dict(
    const std::vector<std::pair<std::string, torch::Tensor>>& state, TorchFormat format) {
  // One storage per tensor, keys "0", "1", ...; tensors saved contiguous at offset 0.
  std::vector<torch::Tensor> data;
  pickle::Pickler p;
  p.global("collections", "OrderedDict");
  p.tuple(0);
  p.op('R');
  p.mark();
  for (size_t i = 0; i < state.size(); ++i) {
    const torch::Tensor tensor = state[i].second.detach().to(torch::kCPU).contiguous();
    const std::string key = std::to_string(i);
    p.string(state[i].first);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.mark();
    // The persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel[, None]).
    p.mark();
    p.string("storage");
    p.global("torch", pickle::storage_class_name(tensor.scalar_type()));
    p.string(key);
    p.string("cpu");
    p.integer(tensor.numel());
    if (format == TorchFormat::kLegacy) p.none();
    p.tuple(format == TorchFormat::kLegacy ? 6 : 5);
    p.op('Q');  // BINPERSID
    p.integer(0);
    p.mark();
    for (int64_t size : tensor.sizes()) p.integer(size);
    p.op('t');
    p.mark();
    for (int64_t stride : tensor.strides()) p.integer(stride);
    p.op('t');
    p.boolean(false);
    p.global("collections", "OrderedDict");
    p.tuple(0);
    p.op('R');
    p.op('t');
    p.op('R');
    data.push_back(tensor);
  }
  p.op('u');  // SETITEMS
  p.stop();

  auto raw = [](const torch::Tensor& t) {
    return std::make_pair(static_cast<const unsigned char*>(t.data_ptr()), t.nbytes());
  };
  if (format == TorchFormat::kZip) {
    zip::Writer writer;
    writer.add("archive/data.pkl", p.bytes().data(), p.bytes().size());
    writer.add("archive/byteorder", "little", 6);
    for (size_t i = 0; i < data.size(); ++i) {
      const auto [bytes, size] = raw(data[i]);
      writer.add("archive/data/" + std::to_string(i), bytes, size);
    }
    writer.add("archive/version", "3\n", 2);
    return writer.finish();
  }

  // Legacy: magic number, protocol version, sys_info, the main pickle, the storage keys,
  // then each storage as an int64 element count and its bytes.
  std::vector<unsigned char> out;
  auto append = [&](const std::vector<unsigned char>& bytes) {
    out.insert(out.end(), bytes.begin(), bytes.end());
  };
  {
    pickle::Pickler magic;
    magic.op(0x8a);
    magic.op(static_cast<unsigned char>(kLegacyMagic.size()));
    magic.bytes().insert(magic.bytes().end(), kLegacyMagic.begin(), kLegacyMagic.end());
    magic.stop();
    append(magic.bytes());
    pickle::Pickler protocol;
    protocol.integer(kLegacyProtocol);
    protocol.stop();
    append(protocol.bytes());
    pickle::Pickler info;
    info.op('}');
    info.mark();
    info.string("protocol_version");
    info.integer(kLegacyProtocol);
    info.string("little_endian");
    info.boolean(true);
    info.string("type_sizes");
    info.op('}');
    info.mark();
    info.string("short");
    info.integer(2);
    info.string("int");
    info.integer(4);
    info.string("long");
    info.integer(4);
    info.op('u');
    info.op('u');
    info.stop();
    append(info.bytes());
  }
  append(p.bytes());
  pickle::Pickler keys;
  keys.op(']');
  keys.mark();
  for (size_t i = 0; i < data.size(); ++i) keys.string(std::to_string(i));
  keys.op('e');
  keys.stop();
  append(keys.bytes());
  for (const torch::Tensor& tensor : data) {
    const int64_t numel = tensor.numel();
    const auto* n = reinterpret_cast<const unsigned char*>(&numel);
    out.insert(out.end(), n, n + 8);
    const auto [bytes, size] = raw(tensor);
    out.insert(out.end(), bytes, bytes + size);
  }
  return out;
}

void write_torch_state_dict(const std::filesystem::path& file,
                            const std::vector<std::pair<std::string, torch::Tensor>>& state,
                            TorchFormat format) {
  const std::vector<unsigned char> bytes = encode_torch_state_dict(state, format);
  write_file_atomic(file, bytes.data(), bytes.size());
}

}  // namespace nad::io
