#include "nad/defenses/nad.h"

#include <algorithm>
#include <cstdio>

#include "nad/util/error.h"

namespace nad::defenses {

train::ExtraLoss make_attention_loss(const models::Classifier& teacher, std::vector<double> betas,
                                     double power, AttentionKind kind) {
  return [teacher, betas, power, kind](const torch::Tensor& inputs,
                                       const models::ModelOutput& student_output) {
    models::ModelOutput teacher_output;
    {
      // The teacher is frozen: no graph is built for it.
      torch::NoGradGuard no_grad;
      teacher_output = teacher->forward(inputs);
    }
    if (teacher_output.features.size() != student_output.features.size()) {
      throw UserError("teacher and student have different numbers of attention groups");
    }
    torch::Tensor loss = torch::zeros({}, inputs.options());
    for (size_t g = 0; g < betas.size(); ++g) {
      if (betas[g] == 0) continue;
      const auto& fs = student_output.features[g];
      const auto& ft = teacher_output.features[g];
      if (fs.size(2) != ft.size(2) || fs.size(3) != ft.size(3)) {
        throw UserError("teacher and student group " + std::to_string(g + 1) +
                        " outputs differ in spatial size");
      }
      loss = loss + betas[g] * attention_loss(fs, ft.detach(), power, kind);
    }
    return loss;
  };
}

NadResult neural_attention_distillation(const models::Classifier& model,
                                        const models::ModelSpec& spec, const CleanData& clean,
                                        const NadOptions& options, models::Classifier teacher,
                                        const train::EpochEvaluation& evaluate,
                                        const std::function<void(const std::string&)>& log) {
  std::vector<double> betas = options.betas.empty() ? model->default_betas() : options.betas;
  if (betas.size() != model->group_names().size()) {
    throw UserError("--beta needs " + std::to_string(model->group_names().size()) +
                    " values for this model (one per group), got " + std::to_string(betas.size()));
  }
  NadResult result;
  FinetuneOptions student_options = options.student;
  // Rates the student may try, largest first (used when the teacher was finetuned here).
  std::vector<double> student_rates;
  std::optional<double> reference_val;
  if (!teacher) {
    if (log) log("teacher: finetuning a copy of the model on the clean subset");
    result.teacher_run = finetune(model, spec, clean, options.teacher, evaluate, {}, log);
    teacher = result.teacher_run.model;
    // The student is the same finetuning plus distillation towards this teacher, so it starts
    // at the rate the teacher's search validated; distillation can still destabilise a large
    // rate, so it steps down the grid while its hold-out accuracy falls short.
    if (student_options.auto_lr) {
      student_options.auto_lr = false;
      reference_val = result.teacher_run.best_validation_acc;
      for (double lr : options.student.lr_search.grid) {
        if (lr <= result.teacher_run.lr * (1 + 1e-9)) student_rates.push_back(lr);
      }
      std::sort(student_rates.rbegin(), student_rates.rend());
    }
  }
  teacher->to(options.student.train.device);
  teacher->eval();
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  result.teacher = teacher;

  if (log) log("student: distilling attention from the teacher");
  train::ExtraLoss loss = make_attention_loss(teacher, betas, options.power, options.attention);
  if (student_rates.empty()) {
    result.student_run = finetune(model, spec, clean, student_options, evaluate, loss, log);
  } else {
    nlohmann::json tried = nlohmann::json::array();
    for (size_t i = 0; i < student_rates.size(); ++i) {
      student_options.train.lr = student_rates[i];
      result.student_run = finetune(model, spec, clean, student_options, evaluate, loss, log);
      const double val = result.student_run.validation_acc.value_or(0);
      const bool accepted =
          !reference_val || val >= *reference_val - options.student.lr_search.tolerance;
      tried.push_back({{"lr", student_rates[i]}, {"val_acc", val}, {"accepted", accepted}});
      if (log) {
        char line[160];
        std::snprintf(line, sizeof line,
                      "student lr %.4g: validation accuracy %.2f%% (best finetuned %.2f%%) -> %s",
                      student_rates[i], val, reference_val.value_or(0),
                      accepted ? "accepted" : "rejected");
        log(line);
      }
      if (accepted) break;
    }
    result.student_run.lr_search = {{"reference_val_acc", reference_val.value_or(0)},
                                    {"tried", tried}};
  }
  result.student = result.student_run.model;
  return result;
}

}  // namespace nad::defenses
