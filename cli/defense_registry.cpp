#include "defense_registry.h"

#include "common.h"

namespace nad::cli {

// Each defense's subcommand, set up in its own file (cli/<name>.cpp); this file is the only
// place that names them.
void setup_finetune(CLI::App& app);
void setup_prune(CLI::App& app);
void setup_mcr(CLI::App& app);
void setup_erase(CLI::App& app);
void setup_clp(CLI::App& app);
void setup_fst(CLI::App& app);
void setup_anp(CLI::App& app);
void setup_ibau(CLI::App& app);

const std::vector<DefenseEntry>& defense_registry() {
  // name, table column, uses clean data, finetunes with SGD, resumable; subcommand setup.
  static const std::vector<DefenseEntry> registry = {
      {{"finetune", "Finetuning", true, true}, setup_finetune},
      {{"prune", "Fine-pruning", true, true}, setup_prune},
      {{"mcr", "MCR", true, true}, setup_mcr},
      {{"erase", "NAD", true, true}, setup_erase},
      {{"clp", "CLP", false, false, false}, setup_clp},
      {{"fst", "FST", true, true}, setup_fst},
      {{"anp", "ANP", true, false, true}, setup_anp},
      {{"ibau", "I-BAU", true, false, true}, setup_ibau},
  };
  return registry;
}

std::vector<pipeline::DefenseInfo> defense_infos() {
  std::vector<pipeline::DefenseInfo> infos;
  for (const auto& entry : defense_registry()) infos.push_back(entry.info);
  return infos;
}

}  // namespace nad::cli
