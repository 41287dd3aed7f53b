// sgd_step (multi-tensor SGD) against LibTorch's own SGD: the same numbers, bit for bit, over
// several steps, for each combination of momentum, Nesterov, dampening and weight decay.
#include "nad/train/sgd.h"

#include <gtest/gtest.h>

namespace nad::train {
namespace {

std::vector<torch::Tensor> make_parameters() {
  torch::manual_seed(3);
  std::vector<torch::Tensor> parameters = {
      torch::randn({8, 3, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast), torch::randn({8}),
      torch::randn({10, 8}), torch::randn({})};
  for (auto& p : parameters) p.set_requires_grad(true);
  return parameters;
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> out;
  for (const auto& p : parameters) out.push_back(p.detach().clone().set_requires_grad(true));
  return out;
}

void set_gradients(std::vector<torch::Tensor>& parameters, int step) {
  torch::manual_seed(100 + step);
  for (auto& p : parameters) p.mutable_grad() = torch::randn_like(p);
}

struct Case {
  double momentum, dampening, weight_decay;
  bool nesterov;
};

TEST(Sgd, ForeachStepEqualsLibTorchsStepBitForBit) {
  for (const Case c : {Case{0.9, 0, 5e-4, true}, Case{0.9, 0, 0, true}, Case{0.9, 0.1, 1e-3, false},
                       Case{0, 0, 5e-4, false}, Case{0, 0, 0, false}}) {
    SCOPED_TRACE(testing::Message()
                 << "momentum " << c.momentum << " dampening " << c.dampening << " weight decay "
                 << c.weight_decay << " nesterov " << c.nesterov);
    std::vector<torch::Tensor> reference = make_parameters();
    std::vector<torch::Tensor> ours = copies(reference);
    auto options = [&] {
      return torch::optim::SGDOptions(0.1)
          .momentum(c.momentum)
          .dampening(c.dampening)
          .weight_decay(c.weight_decay)
          .nesterov(c.nesterov);
    };
    torch::optim::SGD libtorch_sgd(reference, options());
    torch::optim::SGD our_sgd(ours, options());
    for (int step = 0; step < 4; ++step) {
      set_gradients(reference, step);
      set_gradients(ours, step);
      // A parameter without a gradient is left alone by both.
      if (step == 2) {
        reference[1].mutable_grad().reset();
        ours[1].mutable_grad().reset();
      }
      libtorch_sgd.step();
      sgd_step(our_sgd);
      for (size_t i = 0; i < reference.size(); ++i) {
        ASSERT_TRUE(torch::equal(ours[i], reference[i])) << "step " << step << ", parameter " << i;
      }
      const auto reference_buffers = sgd_momentum(libtorch_sgd, reference);
      const auto our_buffers = sgd_momentum(our_sgd, ours);
      for (size_t i = 0; i < reference.size(); ++i) {
        ASSERT_EQ(our_buffers[i].defined(), reference_buffers[i].defined());
        if (our_buffers[i].defined()) {
          ASSERT_TRUE(torch::equal(our_buffers[i], reference_buffers[i])) << "buffer " << i;
        }
      }
    }
    // And the parameters really moved.
    EXPECT_FALSE(torch::equal(ours[0], make_parameters()[0]));
  }
}

TEST(Sgd, ClearGradientsDropsThem) {
  std::vector<torch::Tensor> parameters = make_parameters();
  set_gradients(parameters, 0);
  clear_gradients(parameters);
  for (const auto& p : parameters) EXPECT_FALSE(p.grad().defined());
}

}  // namespace
}  // namespace nad::train
