// `shadowctl demo`: a real application runs through a guest device while
// faults are injected into its driver domain, and the report says whether
// the application noticed. One workload per device class: iperf3 (vif),
// aplay (vsnd), fio (vbd).
#pragma once

#include <string>
#include <vector>

namespace sd::tools::demo {

// args are those after the subcommand, with --json already taken out
// (json_out). Returns the exit status: 0 transparent, 1 not, 2 bad command
// line (the caller then prints the usage line).
int demo_main(const std::string& socket, bool json_out, const std::vector<std::string>& args);
extern const char kDemoArgs[];  // the usage line's argument part
extern const char kDemoHelp[];  // `shadowctl demo --help`

}  // namespace sd::tools::demo
