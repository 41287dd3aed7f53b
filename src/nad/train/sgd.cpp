#include "nad/train/sgd.h"

#include <sstream>
#include <string>
#include <type_traits>

#include "nad/util/error.h"

namespace nad::train {

namespace {

// The key of LibTorch's optimizer state for a parameter: a string in 1.x, the TensorImpl
// pointer in 2.x.
template <typename Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& parameter) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    // As 1.x's optimizers write it (c10::guts::to_string, gone in 2.x): the pointer streamed.
    std::ostringstream key;
    key << parameter.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(parameter.unsafeGetTensorImpl());
  }
}

// The momentum buffer of `parameter`, undefined when it has none yet.
torch::Tensor momentum_buffer(torch::optim::SGD& optimizer, const torch::Tensor& parameter) {
  auto& state = optimizer.state();
  auto it = state.find(state_key(state, parameter));
  if (it == state.end()) return {};
  return static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer();
}

}  // namespace

std::vector<torch::Tensor> sgd_momentum(torch::optim::SGD& optimizer,
                                        const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> buffers;
  for (const auto& p : parameters) {
    const torch::Tensor buffer = momentum_buffer(optimizer, p);
    buffers.push_back(buffer.defined() ? buffer.detach().cpu().clone() : torch::Tensor());
  }
  return buffers;
}

void set_sgd_momentum(torch::optim::SGD& optimizer, const std::vector<torch::Tensor>& parameters,
                      const std::vector<torch::Tensor>& buffers) {
  if (buffers.size() != parameters.size()) {
    throw UserError("state file: " + std::to_string(buffers.size()) + " momentum buffers for " +
                    std::to_string(parameters.size()) + " parameters");
  }
  auto& state = optimizer.state();
  state.clear();
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (!buffers[i].defined()) continue;
    if (buffers[i].sizes() != parameters[i].sizes()) {
      throw UserError("state file: momentum buffer " + std::to_string(i) +
                      " does not fit its parameter");
    }
    auto s = std::make_unique<torch::optim::SGDParamState>();
    s->momentum_buffer(buffers[i].to(parameters[i].device(), parameters[i].scalar_type()).clone());
    state[state_key(state, parameters[i])] = std::move(s);
  }
}

void sgd_step(torch::optim::SGD& optimizer) {
  torch::NoGradGuard no_grad;
  struct Group {
    std::vector<torch::Tensor> parameters, gradients, buffers;
  };
  std::vector<Group> groups;
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    Group g;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      g.parameters.push_back(p);
      g.gradients.push_back(p.grad());
      if (o.momentum() != 0) {
        torch::Tensor buffer = momentum_buffer(optimizer, p);
        // First step: LibTorch's SGD starts each buffer as a copy of the first update.
        if (!buffer.defined()) {
          optimizer.step();
          return;
        }
        g.buffers.push_back(buffer);
      }
    }
    groups.push_back(std::move(g));
  }
  size_t index = 0;
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    Group& g = groups[index++];
    if (g.parameters.empty()) continue;
    // As torch::optim::SGD::step: d_p = grad + wd * p; buf = m * buf + (1 - dampening) * d_p;
    // d_p = nesterov ? d_p + m * buf : buf; p -= lr * d_p.
    std::vector<torch::Tensor> update =
        o.weight_decay() != 0 ? at::_foreach_add(g.gradients, g.parameters, o.weight_decay())
                              : g.gradients;
    if (o.momentum() != 0) {
      at::_foreach_mul_(g.buffers, o.momentum());
      at::_foreach_add_(g.buffers, update, 1 - o.dampening());
      if (o.nesterov()) {
        if (o.weight_decay() == 0)
          update = at::_foreach_add(update, g.buffers, o.momentum());
        else
          at::_foreach_add_(update, g.buffers, o.momentum());
      } else {
        update = g.buffers;
      }
    }
    at::_foreach_add_(g.parameters, update, -o.lr());
  }
}

void clear_gradients(const std::vector<torch::Tensor>& parameters) {
  for (const auto& p : parameters) {
    if (p.grad().defined()) const_cast<torch::Tensor&>(p).mutable_grad().reset();
  }
}

}  // namespace nad::train
