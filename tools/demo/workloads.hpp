// The demo's workloads, one per device class, and the options they share.
#pragma once

#include <string>
#include <vector>

namespace sd::tools::demo {

struct Opts {
  std::vector<std::string> classes;
  long duration = 20;
  long faults = 5;
  std::vector<std::string> kinds{"kill", "segv", "hang", "garbage"};
  std::string config;
};

// Each returns the exit status: 0 transparent, 1 not or could not run.
// iperf3 from the guest's netns to the wire netns (iperf3.cpp).
int run_iperf3(const std::string& sock, bool json_out, const Opts& o);
// aplay through the ALSA plugin; gaps from the DAC's recording (aplay.cpp).
int run_aplay(const std::string& sock, bool json_out, const Opts& o);
// fio write+verify through sd-blkfront (fio.cpp).
int run_fio(const std::string& sock, bool json_out, const Opts& o);

}  // namespace sd::tools::demo
