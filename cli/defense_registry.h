#pragma once
#include <CLI/CLI.hpp>
#include <vector>

#include "nad/pipeline/config.h"

namespace nad::cli {

// The defenses, one line each in defense_registry.cpp: `nad <name>` (its subcommand, set up by
// `setup`), `nad table`'s defense names and columns, and the resumable commands read this table.
struct DefenseEntry {
  pipeline::DefenseInfo info;
  void (*setup)(CLI::App& app);
};

const std::vector<DefenseEntry>& defense_registry();

// The registry's descriptions, for nad table.
std::vector<pipeline::DefenseInfo> defense_infos();

}  // namespace nad::cli
