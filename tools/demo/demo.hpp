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

// The options the workloads share.
struct Opts {
  std::vector<std::string> classes;
  long duration = 20;
  long faults = 5;
  std::vector<std::string> kinds{"kill", "segv", "hang", "garbage"};
  std::string config;
};

// Each runs its application once per guest device of the class on one
// driver domain, all at once, and returns the exit status as demo_main.
// iperf3 from each guest's netns to the wire netns (iperf3.cpp).
int run_iperf3(const std::string& sock, bool json_out, const Opts& o);
// aplay through each card's ALSA plugin; gaps from its DAC's recording (aplay.cpp).
int run_aplay(const std::string& sock, bool json_out, const Opts& o);
// fio write+verify through each disk's sd-blkfront (fio.cpp).
int run_fio(const std::string& sock, bool json_out, const Opts& o);

}  // namespace sd::tools::demo
