// The one client of shadowd's control socket (JSON lines, one object per line
// each way), shared by shadowctl's subcommands and the demo. Only the socket:
// nothing here links or includes shadowd.
#pragma once

#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace sd::tools {

// One connection to shadowd's control socket.
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

// Why a request got no ok answer.
struct RequestError {
  enum Kind { kUnreachable, kLost, kNoAnswer, kRefused } kind;
  std::string text;  // e.g. "cannot reach shadowd at PATH: Connection refused", or shadowd's error
};

// One request, one answer: the answer when shadowd says ok, else why not. On
// `conn` when given (it stays open for what follows, e.g. `events -f`), else
// on a connection of its own. timeout_s > 0: stop waiting for the answer
// after that long.
std::expected<nlohmann::json, RequestError> request(const std::string& sock, const nlohmann::json& req,
                                                    Conn* conn = nullptr, int timeout_s = 0);

}  // namespace sd::tools
