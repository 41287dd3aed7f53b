#include "nad/defenses/ibau.h"

#include <gtest/gtest.h>

#include <cmath>

#include "nad/util/error.h"

namespace nad::defenses {
namespace {

// A problem whose hypergradient is known in closed form. Inner loss g(w) = a w^2 / 2 - b w, so the
// fixed-point map is w' = w - eta (a w - b) with dw'/dw = 1 - eta a =: r, dw'/da = -eta w,
// dw'/db = eta. Outer loss f = (w - c)^2 / 2 + a^2 / 2. K steps of v <- r v + (w - c) from 0 give
// v = (w - c) (1 - r^K) / (1 - r); the hypergradient is (-eta w v + a, eta v).
TEST(Ibau, HypergradientMatchesTheClosedForm) {
  const double eta = 0.1, c = 3, w0 = 0.4;
  const int k = 5;
  torch::Tensor a = torch::tensor({2.0}, torch::kDouble).set_requires_grad(true);
  torch::Tensor b = torch::tensor({1.0}, torch::kDouble).set_requires_grad(true);
  const auto outer = [&](const torch::Tensor& w) {
    return (0.5 * (w - c).pow(2) + 0.5 * a.pow(2)).sum();
  };
  const auto inner = [&](const torch::Tensor& w) { return (0.5 * a * w.pow(2) - b * w).sum(); };
  const std::vector<torch::Tensor> grads =
      implicit_hypergradient({a, b}, torch::tensor({w0}, torch::kDouble), outer, inner, eta, k);
  const double r = 1 - eta * 2.0;
  const double v = (w0 - c) * (1 - std::pow(r, k)) / (1 - r);
  ASSERT_EQ(grads.size(), 2u);
  EXPECT_NEAR(grads[0].item<double>(), -eta * w0 * v + 2.0, 1e-12);
  EXPECT_NEAR(grads[1].item<double>(), eta * v, 1e-12);
  // Nothing was accumulated into the parameters' .grad.
  EXPECT_FALSE(a.grad().defined());
}

// With many steps the fixed point is the implicit function theorem's gradient at the inner
// optimum w* = b / a: df/dw * dw*/d(a, b) = (w* - c) (-b / a^2, 1 / a), plus a from f itself.
TEST(Ibau, ManyStepsReachTheImplicitFunctionGradient) {
  torch::Tensor a = torch::tensor({2.0}, torch::kDouble).set_requires_grad(true);
  torch::Tensor b = torch::tensor({1.0}, torch::kDouble).set_requires_grad(true);
  const double c = 3, w_star = 0.5;
  const auto outer = [&](const torch::Tensor& w) {
    return (0.5 * (w - c).pow(2) + 0.5 * a.pow(2)).sum();
  };
  const auto inner = [&](const torch::Tensor& w) { return (0.5 * a * w.pow(2) - b * w).sum(); };
  const auto grads = implicit_hypergradient({a, b}, torch::tensor({w_star}, torch::kDouble), outer,
                                            inner, 0.1, 500);
  EXPECT_NEAR(grads[0].item<double>(), (w_star - c) * (-1.0 / 4.0) + 2.0, 1e-9);
  EXPECT_NEAR(grads[1].item<double>(), (w_star - c) * 0.5, 1e-9);
}

TEST(Ibau, OptionsOutOfRangeAreRefused) {
  IbauOptions options;
  options.fixed_point_steps = 0;
  EXPECT_THROW(check_ibau_options(options), UserError);
  options = IbauOptions{};
  options.portion = 1.5;
  EXPECT_THROW(check_ibau_options(options), UserError);
}

}  // namespace
}  // namespace nad::defenses
