#include "nad/defenses/nad.h"

#include <cstdio>

#include "nad/models/registry.h"
#include "nad/util/error.h"
#include "nad/util/flags.h"

namespace nad::defenses {

train::ExtraLoss make_attention_loss(const models::Classifier& teacher, std::vector<double> betas,
                                     double power, AttentionKind kind) {
  return [teacher, betas, power, kind](const torch::Tensor& inputs,
                                       const models::ModelOutput& student_output) {
    if (betas.size() != student_output.features.size()) {
      throw UserError("the student has " + std::to_string(student_output.features.size()) +
                      " attention groups but " + std::to_string(betas.size()) + " betas");
    }
    // The teacher is frozen: its maps are computed in inference mode (no graph, no version
    // counters) and cloned out of it, since inference tensors cannot be saved for backward.
    std::vector<torch::Tensor> teacher_maps(betas.size());
    {
      torch::InferenceMode inference;
      models::ModelOutput teacher_output = teacher->forward(inputs);
      check_attention_groups(teacher_output.features, student_output.features, betas, "NAD");
      for (size_t g = 0; g < betas.size(); ++g) {
        if (betas[g] == 0) continue;
        teacher_maps[g] = attention_map(teacher_output.features[g], power, kind);
      }
    }
    torch::Tensor loss = torch::zeros({}, inputs.options().dtype(torch::kFloat));
    for (size_t g = 0; g < betas.size(); ++g) {
      if (betas[g] == 0) continue;
      loss =
          loss + betas[g] * torch::mse_loss(attention_map(student_output.features[g], power, kind),
                                            teacher_maps[g].clone());
    }
    return loss;
  };
}

std::vector<double> select_groups(std::vector<double> betas, const std::vector<std::string>& names,
                                  const std::vector<std::string>& groups) {
  if (groups.empty()) return betas;
  std::vector<bool> keep(names.size(), false);
  for (const std::string& group : groups) {
    size_t found = names.size();
    for (size_t g = 0; g < names.size(); ++g) {
      if (group == names[g] || group == std::to_string(g + 1)) found = g;
    }
    if (found == names.size()) {
      std::string known;
      for (size_t g = 0; g < names.size(); ++g) {
        known += (g ? ", " : "") + std::to_string(g + 1) + " or " + names[g];
      }
      throw UserError(flag::groups + ": no group '" + group + "' in this model (it has " + known +
                      ")");
    }
    keep[found] = true;
  }
  for (size_t g = 0; g < betas.size() && g < keep.size(); ++g) {
    if (!keep[g]) betas[g] = 0;
  }
  return betas;
}

void check_attention_groups(const std::vector<torch::Tensor>& teacher,
                            const std::vector<torch::Tensor>& student,
                            const std::vector<double>& betas, const std::string& who) {
  if (teacher.size() != student.size()) {
    throw UserError(who + ": the teacher has " + std::to_string(teacher.size()) +
                    " attention groups, the model " + std::to_string(student.size()));
  }
  for (size_t g = 0; g < teacher.size() && g < betas.size(); ++g) {
    if (betas[g] == 0) continue;  // not distilled
    const auto& t = teacher[g];
    const auto& s = student[g];
    if (t.size(2) != s.size(2) || t.size(3) != s.size(3)) {
      throw UserError(who + ": the teacher's group " + std::to_string(g + 1) + " is " +
                      std::to_string(t.size(2)) + "x" + std::to_string(t.size(3)) +
                      ", the model's " + std::to_string(s.size(2)) + "x" +
                      std::to_string(s.size(3)) + ": attention maps cannot be compared");
    }
  }
}

void check_teacher_fits(const models::Classifier& teacher, const models::Classifier& student,
                        const torch::Tensor& inputs, const std::vector<double>& betas,
                        const std::string& option) {
  torch::NoGradGuard no_grad;
  teacher->eval();
  student->eval();
  check_attention_groups(teacher->forward(inputs).features, student->forward(inputs).features,
                         betas, option);
}

NadResult neural_attention_distillation(const models::Classifier& model,
                                        const models::ModelSpec& spec, const CleanData& clean,
                                        const NadOptions& options, models::Classifier teacher,
                                        const train::EpochEvaluation& evaluate,
                                        const std::function<void(const std::string&)>& log) {
  std::vector<double> betas = options.betas.empty() ? models::default_betas(model) : options.betas;
  if (betas.size() != model->group_names().size()) {
    throw UserError(flag::beta + " needs " + std::to_string(model->group_names().size()) +
                    " values for this model (one per group), got " + std::to_string(betas.size()));
  }
  NadResult result;
  FinetuneOptions student_options = options.student;
  if (!teacher) {
    if (log) log("teacher: finetuning a copy of the model on the clean subset");
    result.teacher_run = finetune(model, spec, clean, options.teacher, evaluate, {}, log);
    teacher = result.teacher_run.model;
    // The student is the same finetuning plus distillation towards this teacher, so it starts
    // at the rate the teacher's search validated; distillation can still destabilise a large
    // rate, so it steps down the grid while its hold-out accuracy falls short of the teacher
    // search's best.
    if (student_options.auto_lr && result.teacher_run.best_validation_acc) {
      student_options.lr_search.step_down_from = result.teacher_run.lr;
      student_options.lr_search.reference_val_acc = *result.teacher_run.best_validation_acc;
      student_options.lr_search.reference_val_correct = result.teacher_run.best_validation_correct;
    }
  }
  teacher->to(options.student.train.device);
  teacher->eval();
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  result.teacher = teacher;

  if (log) log("student: distilling attention from the teacher");
  train::ExtraLoss loss = make_attention_loss(teacher, betas, options.power, options.attention);
  result.student_run = finetune(model, spec, clean, student_options, evaluate, loss, log);
  result.student = result.student_run.model;
  return result;
}

}  // namespace nad::defenses
