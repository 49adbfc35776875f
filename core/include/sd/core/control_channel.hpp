// Control channel between shadowd and one driver-domain incarnation.
//
// Local platform: a SOCK_SEQPACKET unix socket pair; fds (grant pages, event
// channels, the passed-through device) travel with SCM_RIGHTS. The peer is
// untrusted, so every message has one fixed size and shape: nothing to parse,
// the text field is forced to end in NUL, unknown types are rejected by the
// receiver.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
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
  // shadowd -> driver domain
  kPing = 100,       // b = sequence number
  kFault = 101,      // a = FaultKind: make this incarnation fail on purpose
  kProbe = 102,      // a = ProbeKind, b = argument, text = argument
  kShutdown = 104,
  // device plumbing (b = device handle); same messages to drvdom and frontends
  kDevAttach = 110,   // shadowd -> drvdom / frontend: a = class, payload = class config; fds attached
  kGrantFds = 111,    // shadowd -> drvdom / frontend: a = first grant ref; fds attached in ref order, each
                      // holding whole pages from there on (granted_pages(); local: one fd, the whole pool)
  kDevAttached = 112, // drvdom / frontend -> shadowd: serving (a = 0) or refused (a = errno, text = why)
  kDevConfig = 113,   // shadowd -> drvdom: new config state (payload); frontend -> shadowd: config changed
  kBackendGone = 114, // shadowd -> frontend: stop consuming responses, the backend is failing
  kReconnect = 115,   // shadowd -> frontend: backend is dead for sure; repair the rings for a new one
                      // (Xen: a = the new backend's domid: a new pool is granted to it)
  kReconnected = 116, // frontend -> shadowd: rings repaired, a = requests replayed (Xen: payload = XenPool)
  kDevFault = 117,    // frontend / drvdom -> shadowd: the peer broke the protocol; text = what
  kDevDetach = 118,   // shadowd -> drvdom: stop serving the device
  kDevGo = 119,       // shadowd -> drvdom (standby): take the rings now; payload = config to replay
  kGrantRefs = 120,   // Xen, instead of kGrantFds: frontend -> shadowd (in kReconnected) and shadowd ->
                      // drvdom: b = device handle, payload = XenPool (the pool as grant refs)
};

// The guest's pool on Xen: grant refs and an event-channel port instead of
// fds. Written by the frontend, checked by whoever maps it.
struct XenPool {
  uint32_t owner = 0;    // the guest's domid (the pages are its memory)
  uint32_t dir_ref = 0;  // grant ref of the directory page listing the pool's refs
  uint32_t pages = 0;
  uint32_t port = 0;     // event channel the owner offered to the backend's domain
  // shadowd -> drvdom: the device the driver domain owns for it, by its
  // name there (vif: the NIC's interface name; vbd: the disk's path).
  char device[64] = {};
};

// kGrantRefs's `a`: which pool it carries. The guest's comes first; a
// class with memory shadowd lends its backend (vsnd: the DAC) gets that
// memory's pool second (owner 0, `port` = its interrupt, no device name).
constexpr uint32_t kPoolGuest = 0;
constexpr uint32_t kPoolLent = 1;

// kDevAttach's `a` = device class, plus this bit for a warm standby: map the
// pages, answer kDevAttached with text "standby", wait for kDevGo.
constexpr uint32_t kAttachStandby = 0x100;

enum class FaultKind : uint32_t {
  kSegv = 1,
  kHang = 2,         // stop serving everything, heartbeats included
  kExit = 3,
  kBadSyscall = 4,
  kStall = 5,        // keep answering heartbeats but stop processing rings (progress watchdog)
  kBadId = 6,        // answer a request with an id that is not in flight
  kBadProd = 7,      // publish rsp_prod beyond req_prod
  kBadGrant = 8,     // answer with an offset/size outside the granted page (wild grant use)
};
enum class ProbeKind : uint32_t { kOpenPath = 1, kNetDevs = 2 };

constexpr uint32_t kProtocolVersion = 1;

struct Msg {
  MsgType type{};
  uint32_t a = 0;
  uint64_t b = 0;
  char text[240] = {};

  void set_text(std::string_view s);
  std::string get_text() const;  // bounded: never reads past the field
  // Binary payload in the text field (class config structs).
  template <class P>
  void set_payload(const P& p) {
    static_assert(sizeof(P) <= sizeof(text) && std::is_trivially_copyable_v<P>);
    std::memcpy(text, &p, sizeof(P));
  }
  template <class P>
  P get_payload() const {
    static_assert(sizeof(P) <= sizeof(text) && std::is_trivially_copyable_v<P>);
    P p;
    std::memcpy(&p, text, sizeof(P));
    return p;
  }
};
static_assert(sizeof(Msg) == 256);

// How many 4 KiB pages a kGrantFds fd holds (its size); kInvalidInput if it
// is not a file of whole pages (a pipe, an empty or torn file).
Result<size_t> granted_pages(int fd);

// One end of a control channel. Not thread-safe; one owner.
class Channel {
 public:
  Channel() = default;
  explicit Channel(UniqueFd fd) : fd_(std::move(fd)) {}

  // Makes a connected pair (both ends close-on-exec).
  static Result<std::pair<Channel, Channel>> pair();
  // A frontend's end: connects to the device's unix socket at `path` in
  // shadowd's state_dir; `what` ("vbd", "vsnd") names it in errors.
  static Result<Channel> connect(const std::string& path, const std::string& what);

  int fd() const { return fd_.get(); }
  bool valid() const { return bool(fd_); }

  // Sends one message, with an optional fd attached. kRetry if the socket
  // would block, kSystem on other errors (peer gone: EPIPE).
  Result<void> send(const Msg& m, int attach_fd = -1);
  // Sends one message with up to kMaxFds fds attached.
  Result<void> send_fds(const Msg& m, const int* fds, size_t n);
  static constexpr size_t kMaxFds = 64;

  // Receives one message if one is ready. Returns nullopt if none is ready
  // (non-blocking socket) ; kRestartReplay if the peer sent something that is
  // not a whole message of the expected size; kSystem with "peer closed" on
  // EOF. A received fd, if any, is stored in *fd_out (closed if fd_out is null).
  Result<std::optional<Msg>> recv(UniqueFd* fd_out = nullptr);
  // Same, keeping every fd received (in order).
  Result<std::optional<Msg>> recv_fds(std::vector<UniqueFd>* fds_out);

  Result<void> set_nonblocking(bool on);

 private:
  UniqueFd fd_;
};

}  // namespace sd::ctl
