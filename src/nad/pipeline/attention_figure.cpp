#include "nad/pipeline/attention_figure.h"

#include <cstdio>

#include "nad/data/augment.h"
#include "nad/io/figure.h"
#include "nad/util/error.h"

namespace nad::pipeline {

torch::Tensor figure_rows(const RunContext& context, int64_t count, uint64_t seed) {
  const torch::Tensor labels = context.data.test.labels;
  torch::Tensor candidates = torch::arange(labels.size(0), torch::kLong);
  if (context.attack && context.attack->options().label_mode == attacks::LabelMode::kAllToOne) {
    candidates = candidates.masked_select(labels.ne(context.attack->options().target));
  }
  if (candidates.size(0) == 0) throw UserError("the test set has no image the attack targets");
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor order = torch::randperm(candidates.size(0), generator, torch::kLong);
  return std::get<0>(
      candidates.index_select(0, order.slice(0, 0, std::min(count, candidates.size(0)))).sort());
}

nlohmann::json write_attention_png(const std::filesystem::path& file, const RunContext& context,
                                   const std::vector<LabelledModel>& models,
                                   const torch::Tensor& rows, double power,
                                   defenses::AttentionKind kind) {
  if (models.empty()) throw std::invalid_argument("write_attention_png: no model");
  const torch::Tensor clean = context.data.test.images.index_select(0, rows);
  const torch::Tensor labels = context.data.test.labels.index_select(0, rows);
  const bool has_attack = static_cast<bool>(context.attack);
  const torch::Tensor triggered = has_attack ? context.attack->apply(clean) : clean;
  const torch::Tensor wanted = has_attack ? context.attack->target_labels(labels) : labels;
  const std::vector<std::string> groups = models.front().model->group_names();

  io::AttentionFigure figure;
  char power_text[32];
  std::snprintf(power_text, sizeof power_text, "%g", power);
  figure.title = context.data.name + ": attention maps of " +
                 (has_attack ? "triggered test images (" + context.attack->options().name + ")"
                             : "test images") +
                 ", " + defenses::attention_kind_name(kind) + ", p = " + power_text;
  figure.group_names = groups;
  figure.images.resize(static_cast<size_t>(rows.size(0)));

  nlohmann::json predictions = nlohmann::json::array();
  torch::NoGradGuard no_grad;
  for (const auto& labelled : models) {
    if (labelled.model->group_names().size() != groups.size()) {
      throw UserError(labelled.label + ": its model has " +
                      std::to_string(labelled.model->group_names().size()) +
                      " attention groups, the first model " + std::to_string(groups.size()));
    }
    labelled.model->to(context.device);
    labelled.model->eval();
    const models::ModelOutput on_clean =
        labelled.model->forward(data::to_input(clean.to(context.device)));
    const models::ModelOutput on_triggered =
        labelled.model->forward(data::to_input(triggered.to(context.device)));
    const torch::Tensor clean_pred = on_clean.logits.argmax(1).cpu();
    const torch::Tensor triggered_pred = on_triggered.logits.argmax(1).cpu();
    std::vector<torch::Tensor> maps;
    for (const auto& f : on_triggered.features) {
      maps.push_back(defenses::attention_map(f, power, kind).squeeze(1).cpu());
    }
    predictions.push_back(
        {{"model", labelled.label},
         {"rows",
          std::vector<int64_t>(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.size(0))},
         {"clean_prediction", std::vector<int64_t>(clean_pred.data_ptr<int64_t>(),
                                                   clean_pred.data_ptr<int64_t>() + rows.size(0))},
         {"triggered_prediction",
          std::vector<int64_t>(triggered_pred.data_ptr<int64_t>(),
                               triggered_pred.data_ptr<int64_t>() + rows.size(0))}});
    for (int64_t i = 0; i < rows.size(0); ++i) {
      io::AttentionRow row;
      row.label = labelled.label;
      const int64_t truth = labels[i].item<int64_t>();
      const int64_t on_trigger = triggered_pred[i].item<int64_t>();
      row.caption = "label " + std::to_string(truth) + ", predicts " +
                    std::to_string(clean_pred[i].item<int64_t>());
      if (has_attack) {
        row.caption += "\nwith trigger: " + std::to_string(on_trigger) +
                       (on_trigger == wanted[i].item<int64_t>() ? " (backdoor)" : "");
      }
      row.clean = clean[i];
      row.triggered = triggered[i];
      for (const auto& m : maps) row.maps.push_back(m[i]);
      figure.images[static_cast<size_t>(i)].push_back(std::move(row));
    }
  }
  io::write_attention_figure(file, figure);
  return predictions;
}

}  // namespace nad::pipeline
