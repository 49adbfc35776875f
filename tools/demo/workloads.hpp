// The demo's workloads, one per device class, and the options they share.
#pragma once

#include <string>
#include <vector>

#include "faults.hpp"

namespace sd::tools::demo {

struct Opts {
  std::vector<std::string> classes;
  long duration = 20;
  long faults = 5;
  std::vector<std::string> kinds{"kill", "segv", "hang", "garbage"};
  std::string config;
};

// The polled fault schedule of `o` (its faults, their kinds, the run's
// length) into driver domain `dom`, labelled "demo CLASS"; the workload adds
// how its application is timed and seen to end.
PolledSchedule polled_schedule(const std::string& sock, const std::string& dom, const Opts& o);

// Each runs its application once per guest device of the class on one
// driver domain, all at once, and returns the exit status: 0 transparent
// (for every guest), 1 not or could not run.
// iperf3 from each guest's netns to the wire netns (iperf3.cpp).
int run_iperf3(const std::string& sock, bool json_out, const Opts& o);
// aplay through each card's ALSA plugin; gaps from its DAC's recording (aplay.cpp).
int run_aplay(const std::string& sock, bool json_out, const Opts& o);
// fio write+verify through each disk's sd-blkfront (fio.cpp).
int run_fio(const std::string& sock, bool json_out, const Opts& o);

}  // namespace sd::tools::demo
