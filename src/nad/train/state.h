#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nad/train/sgd.h"

namespace nad::train {

struct EpochRecord;

// What a training loop needs to continue bit for bit where it stopped: written after every
// epoch, and mid-epoch when a stop was requested.
struct LoopState {
  int epoch = 0;          // epochs finished
  int64_t step = 0;       // steps of the next epoch already done (after an interrupt only)
  bool complete = false;  // the loop ended; `weights` are its final weights
  torch::Tensor order;    // that epoch's permutation, when step > 0
  double loss_sum = 0;    // that epoch's running totals, when step > 0
  int64_t correct = 0;
  int64_t seen = 0;
  std::vector<torch::Tensor> weights;   // the trained tensors (a model's parameters, buffers)
  std::vector<torch::Tensor> momentum;  // SGD's buffer per parameter; undefined where none yet
  torch::Tensor generator;              // the loop's random generator
  torch::Tensor global_generator;       // torch's default CPU generator
  std::vector<EpochRecord> records;
  // The caller's own state, kept with the loop's (early stopping's best weights, ...).
  std::vector<std::pair<std::string, torch::Tensor>> extra_tensors;
  nlohmann::json extra = nullptr;
};

// A run folder's `state/`: one file per training loop (`<key>.state`), each written atomically
// with nad's own torch.save writer and read back with the safe reader (nothing in it runs).
class StateStore {
 public:
  explicit StateStore(std::filesystem::path dir) : dir_(std::move(dir)) {}
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path file(const std::string& key) const;
  std::optional<LoopState> load(const std::string& key) const;
  void save(const std::string& key, const LoopState& state) const;

 private:
  std::filesystem::path dir_;
};

nlohmann::json record_to_json(const EpochRecord& record);
EpochRecord record_from_json(const nlohmann::json& j);

// Where a loop is, for its state: `epoch` epochs done and `step` steps of the next (then with
// that epoch's permutation and running totals).
struct LoopPosition {
  int epoch = 0;
  int64_t step = 0;
  torch::Tensor order;
  double loss_sum = 0;
  int64_t correct = 0;
  int64_t seen = 0;
  bool complete = false;

  // Counts a step: its summed loss and correct predictions over `rows` rows.
  void add(double step_loss_sum, int64_t step_correct, int64_t rows) {
    loss_sum += step_loss_sum;
    correct += step_correct;
    seen += rows;
  }
  double mean_loss() const { return seen ? loss_sum / seen : 0; }
  double accuracy() const { return seen ? 100.0 * correct / seen : 0; }
};

// An SGD loop's state at `at`: copies of `trained`, SGD's momentum for `parameters`, the
// loop's generator and torch's global one, and the records so far.
LoopState capture_loop_state(const LoopPosition& at, const std::vector<torch::Tensor>& trained,
                             torch::optim::SGD& optimizer,
                             const std::vector<torch::Tensor>& parameters, at::Generator& generator,
                             const std::vector<EpochRecord>& records);
// Puts a saved state back into the same things (`source` names the file in errors).
void restore_loop_state(const LoopState& state, const std::vector<torch::Tensor>& trained,
                        torch::optim::SGD& optimizer, const std::vector<torch::Tensor>& parameters,
                        at::Generator& generator, const std::string& source);

// Copies of `tensors` on the CPU, and back into `tensors` (shapes checked; `source` names the
// state file in errors).
std::vector<torch::Tensor> cpu_copies(const std::vector<torch::Tensor>& tensors);
void copy_into(const std::vector<torch::Tensor>& tensors, const std::vector<torch::Tensor>& saved,
               const std::string& source);

}  // namespace nad::train
