#include "nad/attacks/trojan.h"

#include "nad/data/augment.h"
#include "nad/data/readers.h"
#include "nad/models/registry.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::attacks {

namespace {

// Writes `patch` (N x C x S x S or 1 x C x S x S float) into the bottom-right corner of
// float N x C x H x W inputs, differentiably.
torch::Tensor stamp_float(const torch::Tensor& inputs, const torch::Tensor& patch) {
  const int64_t size = patch.size(-1);
  const int64_t height = inputs.size(2), width = inputs.size(3);
  torch::Tensor mask = torch::zeros({1, 1, height, width}, inputs.options());
  mask.slice(2, height - size).slice(3, width - size).fill_(1);
  torch::Tensor canvas =
      torch::constant_pad_nd(patch.expand({inputs.size(0), inputs.size(1), size, size}),
                             {width - size, 0, height - size, 0});
  return inputs * (1 - mask) + canvas * mask;
}

// The neuron's activation: the channel's strongest response over positions (a patch in one
// corner reaches only a few of them), averaged over the images.
torch::Tensor neuron_activation(const models::Classifier& model, const torch::Tensor& inputs,
                                size_t group, int64_t neuron) {
  return model->forward(inputs).features.at(group).select(1, neuron).flatten(1).amax(1).mean();
}

double mean_activation(const models::Classifier& model, const torch::Tensor& inputs, size_t group,
                       int64_t neuron) {
  torch::NoGradGuard no_grad;
  return neuron_activation(model, inputs, group, neuron).item<double>();
}

}  // namespace

Trojan::Trojan(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
               int64_t channels)
    : Attack(std::move(options), num_classes) {
  if (options_.trigger_file.empty()) {
    throw UserError(flag::attack + " trojan needs " + flag::trigger_file +
                    " (make one with `nad trojan-trigger`; `nad train` "
                    "makes and saves one when it is omitted)");
  }
  patch_ = data::read_image(options_.trigger_file, static_cast<int>(channels));
  check_patch(height, width);
}

Trojan::Trojan(AttackOptions options, int64_t num_classes, int64_t height, int64_t width,
               const torch::Tensor& patch)
    : Attack(std::move(options), num_classes), patch_(patch.to(torch::kUInt8).contiguous()) {
  check_patch(height, width);
}

void Trojan::check_patch(int64_t height, int64_t width) {
  const std::string source = options_.trigger_file.empty()
                                 ? "the trojan trigger"
                                 : flag::trigger_file + " " + options_.trigger_file;
  if (patch_.dim() != 3 || patch_.size(0) != patch_.size(1)) {
    throw UserError(source + ": the trigger must be a square image");
  }
  if (patch_.size(0) > height || patch_.size(1) > width) {
    throw UserError(source + ": a " + std::to_string(patch_.size(0)) + "x" +
                    std::to_string(patch_.size(1)) + " trigger does not fit " +
                    std::to_string(height) + "x" + std::to_string(width) + " images");
  }
}

torch::Tensor Trojan::apply(const torch::Tensor& images) const {
  if (images.size(3) != patch_.size(2)) {
    throw UserError("the trojan trigger has " + std::to_string(patch_.size(2)) +
                    " channels, the images " + std::to_string(images.size(3)));
  }
  torch::Tensor out = images.clone();
  const int64_t size = patch_.size(0);
  out.slice(1, images.size(1) - size)
      .slice(2, images.size(2) - size)
      .copy_(patch_.to(images.device()).unsqueeze(0).expand({images.size(0), size, size, -1}));
  return out;
}

int64_t select_trojan_neuron(const models::Classifier& model, size_t group, int64_t channels,
                             torch::Tensor* sums) {
  torch::NoGradGuard no_grad;
  const auto parameters = model->named_parameters();
  torch::Tensor total = torch::zeros({channels}, torch::kDouble);
  for (const std::string& name : models::group_consumers(model, group)) {
    const torch::Tensor* weight = parameters.find(name);
    if (weight == nullptr) continue;  // e.g. a block without a shortcut convolution
    torch::Tensor w = weight->detach().to(torch::kCPU, torch::kDouble).abs();
    if (w.size(1) % channels != 0) {
      throw std::logic_error(name + " does not read " + std::to_string(channels) + " channels");
    }
    // Dimension 1 is channels (conv) or channels x positions (flattened for a linear layer).
    total += w.reshape({w.size(0), channels, -1}).sum(torch::IntArrayRef{0, 2});
  }
  if (sums) *sums = total;
  return total.argmax().item<int64_t>();
}

TrojanTrigger generate_trojan_trigger(const models::Classifier& model, const torch::Tensor& images,
                                      const TrojanTriggerOptions& options, torch::Device device) {
  if (images.dim() != 4 || images.size(0) == 0) throw UserError("no images to optimise over");
  const int64_t channels = images.size(3);
  if (options.size < 1 || options.size > std::min(images.size(1), images.size(2))) {
    throw UserError(flag::size + " " + std::to_string(options.size) + " does not fit " +
                    std::to_string(images.size(1)) + "x" + std::to_string(images.size(2)) +
                    " images");
  }
  torch::AutoGradMode enable_grad(true);  // callers may hold a NoGradGuard
  model->to(device);
  model->eval();
  const int64_t count = std::min<int64_t>(options.batch_size, images.size(0));
  torch::Tensor inputs = data::to_input(images.slice(0, 0, count).to(device));

  TrojanTrigger out;
  std::vector<torch::Tensor> features;
  {
    torch::NoGradGuard no_grad;
    features = model->forward(inputs.slice(0, 0, 1)).features;
  }
  const int64_t groups = static_cast<int64_t>(features.size());
  out.group = options.group < 0 ? groups - 1 : options.group;
  if (out.group >= groups) {
    throw UserError(flag::layer + " " + std::to_string(options.group) + ": the model has " +
                    std::to_string(groups) + " groups (0.." + std::to_string(groups - 1) + ")");
  }
  const size_t group = static_cast<size_t>(out.group);
  const int64_t neurons = features[group].size(1);
  out.neuron = options.neuron < 0 ? select_trojan_neuron(model, group, neurons) : options.neuron;
  if (out.neuron >= neurons) {
    throw UserError(flag::neuron + " " + std::to_string(options.neuron) + ": group " +
                    std::to_string(out.group) + " has " + std::to_string(neurons) + " channels");
  }

  // The patch is sigmoid(logits) so it stays a valid image; Adam climbs the activation.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  torch::Tensor logits =
      (torch::rand({1, channels, options.size, options.size}, generator, torch::kFloat) * 2 - 1)
          .to(device)
          .requires_grad_(true);
  torch::optim::Adam optimizer({logits}, torch::optim::AdamOptions(options.lr));
  std::vector<torch::Tensor> frozen;
  for (auto& p : model->parameters()) {
    if (p.requires_grad()) {
      frozen.push_back(p);
      p.requires_grad_(false);
    }
  }
  for (int step = 0; step < options.steps; ++step) {
    optimizer.zero_grad();
    torch::Tensor triggered = stamp_float(inputs, torch::sigmoid(logits));
    torch::Tensor loss = -neuron_activation(model, triggered, group, out.neuron);
    loss.backward();
    optimizer.step();
  }
  for (auto& p : frozen) p.requires_grad_(true);

  out.patch = (torch::sigmoid(logits.detach()) * 255)
                  .round()
                  .clamp(0, 255)
                  .to(torch::kUInt8)
                  .squeeze(0)
                  .permute({1, 2, 0})
                  .to(torch::kCPU)
                  .contiguous();
  out.activation_clean = mean_activation(model, inputs, group, out.neuron);
  torch::Tensor quantised =
      out.patch.permute({2, 0, 1}).unsqueeze(0).to(device, torch::kFloat) / 255;
  out.activation_triggered =
      mean_activation(model, stamp_float(inputs, quantised), group, out.neuron);
  return out;
}

}  // namespace nad::attacks
