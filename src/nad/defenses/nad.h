#pragma once
#include <nlohmann/json.hpp>
#include <optional>

#include "nad/defenses/attention.h"
#include "nad/defenses/finetune.h"

namespace nad::defenses {

// Neural Attention Distillation (Li et al., ICLR 2021).
struct NadOptions {
  FinetuneOptions teacher;    // finetuning that makes the teacher (when none is given)
  FinetuneOptions student;    // the distillation run
  std::vector<double> betas;  // one per group; empty: the model's defaults
  double power = 2.0;
  AttentionKind attention = AttentionKind::kSumPower;
};

struct NadResult {
  models::Classifier student;
  models::Classifier teacher;
  FinetuneResult teacher_run;  // empty records when the teacher was given
  FinetuneResult student_run;
};

// Erases a backdoor from `model` with clean data only. `teacher` may be given (then it is used
// as is); otherwise it is finetuned from the model.
NadResult neural_attention_distillation(const models::Classifier& model,
                                        const models::ModelSpec& spec, const CleanData& clean,
                                        const NadOptions& options,
                                        models::Classifier teacher = nullptr,
                                        const train::EpochEvaluation& evaluate = {},
                                        const std::function<void(const std::string&)>& log = {});

// Keeps the betas of the selected groups and zeroes the rest. `groups` holds 1-based numbers or
// group names (e.g. "3" or "block3"); empty selects all. Throws UserError naming --groups.
std::vector<double> select_groups(std::vector<double> betas, const std::vector<std::string>& names,
                                  const std::vector<std::string>& groups);

// Throws a UserError (starting with `who`) unless the teacher's group features match the
// student's in number, and in spatial size wherever beta is not 0.
void check_attention_groups(const std::vector<torch::Tensor>& teacher,
                            const std::vector<torch::Tensor>& student,
                            const std::vector<double>& betas, const std::string& who);
// The same check before any training, on one forward pass of `inputs` (a float batch).
void check_teacher_fits(const models::Classifier& teacher, const models::Classifier& student,
                        const torch::Tensor& inputs, const std::vector<double>& betas,
                        const std::string& option);

// The NAD loss term for a student output given the frozen teacher (exposed for tests).
train::ExtraLoss make_attention_loss(const models::Classifier& teacher, std::vector<double> betas,
                                     double power, AttentionKind kind);

}  // namespace nad::defenses
