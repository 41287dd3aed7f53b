#include "nad/models/classifier.h"

#include <regex>

#include "nad/models/mnist_cnn.h"
#include "nad/models/resnet.h"
#include "nad/models/wide_resnet.h"
#include "nad/util/compute.h"
#include "nad/util/error.h"

namespace nad::models {

std::vector<std::string> arch_names() {
  return {"wrn-16-1", "wrn-D-K", "preact-resnet18", "resnet18", "mnist-cnn"};
}

namespace {
Classifier build_model(const ModelSpec& spec) {
  if (spec.in_channels <= 0 || spec.num_classes <= 1 || spec.height <= 0 || spec.width <= 0) {
    throw UserError("invalid model shape for '" + spec.arch + "'");
  }
  std::smatch match;
  static const std::regex wrn_pattern("wrn-(\\d+)-(\\d+)");
  if (std::regex_match(spec.arch, match, wrn_pattern)) {
    const int64_t depth = std::stoll(match[1]);
    const int64_t width = std::stoll(match[2]);
    if (depth < 10 || (depth - 4) % 6 != 0 || width < 1) {
      throw UserError("--arch " + spec.arch +
                      ": WRN depth must be 6n+4 (10, 16, 22, 28, 40, ...) and width >= 1");
    }
    return std::make_shared<WideResNetImpl>(WideResNetOptions()
                                                .depth(depth)
                                                .widen_factor(width)
                                                .in_channels(spec.in_channels)
                                                .num_classes(spec.num_classes));
  }
  if (spec.arch == "preact-resnet18" || spec.arch == "resnet18") {
    return std::make_shared<ResNet18Impl>(ResNetOptions()
                                              .in_channels(spec.in_channels)
                                              .num_classes(spec.num_classes)
                                              .preactivation(spec.arch == "preact-resnet18"));
  }
  if (spec.arch == "mnist-cnn") {
    if (spec.height % 4 != 0 || spec.width % 4 != 0) {
      throw UserError("--arch mnist-cnn needs image sides divisible by 4");
    }
    return std::make_shared<MnistCnnImpl>(MnistCnnOptions()
                                              .in_channels(spec.in_channels)
                                              .num_classes(spec.num_classes)
                                              .height(spec.height)
                                              .width(spec.width));
  }
  throw UserError("unknown --arch '" + spec.arch +
                  "' (choose wrn-16-1 or wrn-D-K, preact-resnet18, resnet18, mnist-cnn)");
}
}  // namespace

Classifier create_model(const ModelSpec& spec) {
  Classifier model = build_model(spec);
  // Weights are later filled with copy_, which keeps this layout.
  to_memory_format(*model);
  return model;
}

void copy_weights(const Classifier& source, const Classifier& target) {
  torch::NoGradGuard no_grad;
  auto src_params = source->named_parameters();
  for (auto& item : target->named_parameters()) item.value().copy_(src_params[item.key()]);
  auto src_buffers = source->named_buffers();
  for (auto& item : target->named_buffers()) item.value().copy_(src_buffers[item.key()]);
}

Classifier clone_model(const Classifier& model, const ModelSpec& spec) {
  Classifier copy = create_model(spec);
  const auto device = model->parameters().front().device();
  copy->to(device);
  copy_weights(model, copy);
  copy->train(model->is_training());
  return copy;
}

void check_arch(const std::string& arch) {
  // Building one is cheap next to any run, and keeps a single list of what is accepted.
  create_model({arch, 3, 2, 32, 32});
}

}  // namespace nad::models
