// shadowctl's subcommands, shaped like xl's: one table, each entry with its
// arguments, a one-line help and, where one line is not enough, a long help.
#pragma once

#include <span>
#include <string>
#include <vector>

namespace sd::shadowctl {

struct Global {
  std::string socket = "/run/shadowd/shadowd.sock";
  bool json_out = false;
};

using Args = std::vector<std::string>;

struct Command {
  const char* name;
  const char* args;
  const char* help;
  // The exit status: 0 success, 1 shadowd refused or is unreachable, 2 bad
  // command line (the caller then prints the usage line).
  int (*fn)(const Global&, const Args&);
  const char* long_help = nullptr;  // `shadowctl COMMAND --help`, when more than the one line
};

std::span<const Command> commands();

}  // namespace sd::shadowctl
