// shadowctl's client side of shadowd's control socket (JSON lines), and the
// `shadowctl demo` subcommand built on it: a real application runs through a
// guest device while faults are injected into its driver domain, and the
// report says whether the application noticed.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sd::shadowctl {

// One connection to shadowd's control socket: one JSON object per line each way.
class Conn {
 public:
  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn();
  bool open(const std::string& path);
  bool send(const nlohmann::json& j);
  // Blocks for one line; nullopt at EOF or on a line that is not JSON.
  std::optional<nlohmann::json> recv();
  // Non-blocking use (poll on fd()): fill() reads what is there (false at
  // EOF or on error); take() returns the next complete line, if any (a line
  // that is not JSON comes back discarded).
  int fd() const { return fd_; }
  bool fill();
  std::optional<nlohmann::json> take();

 private:
  int fd_ = -1;
  std::string buf_;
};

// `shadowctl demo`: args are those after the subcommand, with --json already
// taken out (json_out). Returns the exit status: 0 transparent, 1 not, 2 bad
// command line (the caller then prints the usage line).
int demo_main(const std::string& socket, bool json_out, const std::vector<std::string>& args);
// `shadowctl demo --classes vsnd` (demo_vsnd.cpp): aplay through the ALSA
// plugin while faults hit the sound driver domain; gaps from the DAC's recording.
int demo_vsnd(const std::string& socket, bool json_out, long duration, long faults,
              const std::vector<std::string>& kinds, const std::string& config);
// `shadowctl demo --classes vbd` (demo_vbd.cpp): fio write+verify passes
// through sd-blkfront while faults hit the block driver domain.
int demo_vbd(const std::string& socket, bool json_out, long duration, long faults,
             const std::vector<std::string>& kinds, const std::string& config);
extern const char kDemoArgs[];  // the usage line's argument part
extern const char kDemoHelp[];  // `shadowctl demo --help`

}  // namespace sd::shadowctl
