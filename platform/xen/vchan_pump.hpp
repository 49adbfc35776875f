// The control channel's transport on Xen: a libxenvchan between dom0 and a
// domain (driver domain or guest), carrying the same fixed-size ctl::Msg as
// the local platform's SOCK_SEQPACKET socket.
//
// Both ends keep using ctl::Channel: the pump moves whole 256-byte messages
// between the vchan and a local SOCK_SEQPACKET socket whose other end is the
// Channel. The vchan is a byte stream, so the pump only ever reads and
// writes whole messages; what a peer writes is still untrusted and is checked
// by the Channel's reader as on the local platform. Grants and event channels
// travel as references inside messages (no fds cross a domain boundary).
//
// Not thread-safe: one owner calls service() whenever the vchan's event fd
// (libxenvchan_fd_for_select) or the socket is readable.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "sd/core/fd.hpp"
#include "sd/platform/xen/vchan.hpp"

struct libxenvchan;
struct xentoollog_logger;

namespace sd::xen {

// Ring sizes of the control vchans (each way): 64 messages in flight.
constexpr size_t kVchanRingBytes = 64 * sizeof(ctl::Msg);

class VchanPump {
 public:
  // Takes ownership of both: the vchan is closed and the socket end closed
  // with the pump (the Channel end then reads EOF).
  VchanPump(libxenvchan* v, UniqueFd sock);
  ~VchanPump();
  VchanPump(const VchanPump&) = delete;
  VchanPump& operator=(const VchanPump&) = delete;

  int vchan_fd() const;
  int sock_fd() const { return sock_.get(); }

  // Consumes the vchan's pending event (call when vchan_fd() is readable;
  // never blocks then), then moves every whole message that can move.
  // Returns false once either side is closed (the peer domain closed the
  // vchan or died, or the Channel end was closed); the pump is then done.
  Result<bool> service(bool vchan_event);

  size_t queued() const { return to_vchan_.size() + to_sock_.size(); }
  // Messages wait for the Channel's reader (wake on the socket's POLLOUT);
  // those waiting for room in the vchan wake on the peer's event instead.
  bool waiting_for_reader() const { return !to_sock_.empty(); }

 private:
  libxenvchan* v_;
  UniqueFd sock_;
  std::deque<ctl::Msg> to_vchan_, to_sock_;  // accepted, not yet delivered
  bool closed_ = false;
};

// Server side (runs in the domain that offers the pages: drvdom, frontends):
// offers a vchan to `peer` at `xs_path` (xenstore: ring-ref, event-channel).
// kUnavailable with the reason if it cannot (no gntalloc/evtchn device, no
// xenstore).
Result<libxenvchan*> vchan_server(int peer, const std::string& xs_path);
// Client side (shadowd in dom0): connects to the vchan `domid` offers at
// `xs_path`. kRetry if it is not there yet.
Result<libxenvchan*> vchan_client(int domid, const std::string& xs_path);

// A Channel whose messages travel over `v` through a pump; returns the
// Channel end and the pump (whose owner must call service()).
Result<std::pair<ctl::Channel, std::unique_ptr<VchanPump>>> channel_over(libxenvchan* v);

}  // namespace sd::xen
