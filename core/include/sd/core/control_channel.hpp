// Control channel between shadowd and one driver-domain incarnation.
//
// Local platform: a SOCK_SEQPACKET unix socket pair; fds (grant pages, event
// channels, the passed-through device) travel with SCM_RIGHTS. The peer is
// untrusted, so every message has one fixed size and shape: nothing to parse,
// the text field is forced to end in NUL, unknown types are rejected by the
// receiver.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"

namespace sd::ctl {

enum class MsgType : uint32_t {
  // driver domain -> shadowd
  kReady = 1,        // sandbox is up; a = protocol version
  kPong = 2,         // b = sequence number of the ping
  kProbeResult = 3,  // a = 0 or errno; text = detail
  kMapGrant = 4,     // a = pool id, b = grant ref: ask for a granted page
  // shadowd -> driver domain
  kPing = 100,       // b = sequence number
  kFault = 101,      // a = FaultKind: make this incarnation fail on purpose
  kProbe = 102,      // a = ProbeKind, b = argument, text = argument
  kMapReply = 103,   // a = 0 (fd attached) or errno
  kShutdown = 104,
};

enum class FaultKind : uint32_t { kSegv = 1, kHang = 2, kExit = 3, kBadSyscall = 4 };
enum class ProbeKind : uint32_t { kOpenPath = 1, kNetDevs = 2, kMapGrant = 3 };

constexpr uint32_t kProtocolVersion = 1;

struct Msg {
  MsgType type{};
  uint32_t a = 0;
  uint64_t b = 0;
  char text[240] = {};

  void set_text(std::string_view s);
  std::string get_text() const;  // bounded: never reads past the field
};
static_assert(sizeof(Msg) == 256);

// One end of a control channel. Not thread-safe; one owner.
class Channel {
 public:
  Channel() = default;
  explicit Channel(UniqueFd fd) : fd_(std::move(fd)) {}

  // Makes a connected pair (both ends close-on-exec).
  static Result<std::pair<Channel, Channel>> pair();

  int fd() const { return fd_.get(); }
  bool valid() const { return bool(fd_); }

  // Sends one message, with an optional fd attached. kRetry if the socket
  // would block, kSystem on other errors (peer gone: EPIPE).
  Result<void> send(const Msg& m, int attach_fd = -1);

  // Receives one message if one is ready. Returns nullopt if none is ready
  // (non-blocking socket) ; kRestartReplay if the peer sent something that is
  // not a whole message of the expected size; kSystem with "peer closed" on
  // EOF. A received fd, if any, is stored in *fd_out (closed if fd_out is null).
  Result<std::optional<Msg>> recv(UniqueFd* fd_out = nullptr);

  Result<void> set_nonblocking(bool on);

 private:
  UniqueFd fd_;
};

}  // namespace sd::ctl
