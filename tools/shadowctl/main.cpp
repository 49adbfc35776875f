// shadowctl: the operator's command line for shadowd, shaped like xl: global
// options, then one subcommand from the table in commands.cpp. It talks to
// shadowd only over the control socket.
#include <getopt.h>

#include <cstdio>
#include <string>

#include "commands.hpp"

namespace {

using namespace sd::shadowctl;

const char kUsage[] = "usage: shadowctl [--socket PATH] [--json] COMMAND [ARGS]\n";

void help() {
  std::printf(
      "%s\n"
      "Talks to shadowd over its control socket.\n\n"
      "Options:\n"
      "  -s, --socket PATH   shadowd's control socket (default /run/shadowd/shadowd.sock)\n"
      "  -j, --json          print shadowd's answer as JSON (one object; events: one per line)\n"
      "  -V, --version       print the version and exit\n"
      "  -h, --help          this help\n\n"
      "Commands:\n",
      kUsage);
  for (const auto& c : commands()) {
    std::string head = std::string(c.name) + (*c.args ? " " : "") + c.args;
    if (head.size() > 26)
      std::printf("  %s\n  %-26s %s\n", head.c_str(), "", c.help);
    else
      std::printf("  %-26s %s\n", head.c_str(), c.help);
  }
  std::printf("\nExit status: 0 success, 1 shadowd refused or is unreachable, 2 bad command line.\n");
}

}  // namespace

int main(int argc, char** argv) {
  Global g;
  static const option kOpts[] = {{"socket", required_argument, nullptr, 's'},
                                 {"json", no_argument, nullptr, 'j'},
                                 {"version", no_argument, nullptr, 'V'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  opterr = 0;
  // '+': stop at the first non-option, the subcommand; its own args follow.
  for (int c; (c = getopt_long(argc, argv, "+:s:jVh", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 's': g.socket = optarg; break;
      case 'j': g.json_out = true; break;
      case 'V': std::printf("shadowctl 0.1\n"); return 0;
      case 'h': help(); return 0;
      case ':':
        std::fprintf(stderr, "shadowctl: option %s needs a value\n%s", argv[optind - 1], kUsage);
        return 2;
      default:
        std::fprintf(stderr, "shadowctl: unknown option %s\n%s", argv[optind - 1], kUsage);
        return 2;
    }
  }
  if (optind >= argc) {
    std::fprintf(stderr, "shadowctl: no command given\n%s", kUsage);
    return 2;
  }
  std::string name = argv[optind];
  Args args(argv + optind + 1, argv + argc);
  if (name == "help") {
    help();
    return 0;
  }
  for (const auto& c : commands()) {
    if (name != c.name) continue;
    // Options after the subcommand: --json is accepted anywhere, like xl.
    Args rest;
    for (auto& a : args) {
      if (a == "--json" || a == "-j")
        g.json_out = true;
      else if (a == "-h" || a == "--help") {
        if (c.long_help)
          std::printf("%s", c.long_help);
        else
          std::printf("usage: shadowctl %s %s\n  %s\n", c.name, c.args, c.help);
        return 0;
      } else
        rest.push_back(a);
    }
    int rc = c.fn(g, rest);
    if (rc == 2) std::fprintf(stderr, "usage: shadowctl %s %s\n", c.name, c.args);
    return rc;
  }
  std::fprintf(stderr, "shadowctl: unknown command '%s' (see shadowctl --help)\n%s", name.c_str(), kUsage);
  return 2;
}
