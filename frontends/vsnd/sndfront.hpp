// vsnd frontend, the beam splitter, as a library the ALSA plugin
// (pcm_shadow.cpp) drives from the player's own thread: sndif rings to the
// backend on one side, the player's PCM on the other. Every request it posts
// is also recorded in the shadow's splitter log; the stream's state (OPEN
// parameters, volume, mute, trigger state, bytes acknowledged) is kept there
// compacted after every successful response.
//
// It reaches shadowd by connecting to the vsnd's unix socket; shadowd hands
// it the splitter log, its event-channel ends and the guest's pool (ring,
// event page, page directory, PCM buffer pages). On Xen (a PoolSource) the
// pool is granted per backend domain instead, the first with the first
// kReconnect: every repair moves the buffer's audio into the next pool.
//
// Connection states (the player's PCM stays usable in every one of them):
//
//  state      | event                          | action                                  | next
//  -----------+--------------------------------+-----------------------------------------+----------
//  Connected  | invalid response or event      | stop consuming, report kDevFault        | Paused
//             |  (unknown id, wrong operation  |                                         |
//             |  or status, position backwards |                                         |
//             |  or beyond what was written)   |                                         |
//  Connected  | kBackendGone                   | stop consuming responses and events     | Paused
//  Paused     | player writes, ring slot free  | post (queued in the ring)               | Paused
//  Paused     | kReconnect                     | take valid responses, reset the ring    | Connected
//             |                                | and event page, replay in-flight        |
//             |                                | requests from the log, kReconnected     |
//  any        | shadowd closes the socket      | every call fails with kEscalate         | Dead
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/frontend_link.hpp"
#include "common/pool_source.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/sndif.hpp"

namespace sd::front {

class Sndfront final : private FrontendLink::Hooks {
 public:
  // Attaches over a channel to shadowd (bounded: 5 s); connect_frontend()
  // reaches it at the vsnd's socket.
  static Result<std::unique_ptr<Sndfront>> attach(ctl::Channel ch, std::unique_ptr<PoolSource> xen = nullptr);
  ~Sndfront() override;

  // The fds the player should poll (readable = call pump()).
  int event_fd() const { return evt_chan_ ? evt_chan_->wait_fd() : link_.wait_fd(); }
  int control_fd() const { return link_.fd(); }

  // Does everything ready without blocking: control messages, responses,
  // position events. An error means shadowd is gone (nothing will work).
  Result<void> pump();
  // Waits (poll) for something to pump, at most `ms`.
  Result<void> wait(int ms);

  // Stream control, each a request answered synchronously (bounded by
  // `timeout`; shadowd answers in active mode while no backend runs; on
  // Xen a call before the first pool waits for it within the same bound).
  // Return the backend's status (0 or -errno) or an error.
  Result<int32_t> open(uint32_t buffer_bytes, uint32_t period_bytes);
  Result<int32_t> close_stream();
  Result<int32_t> trigger(uint8_t type);
  Result<int32_t> set_volume(int32_t left_mdb, int32_t right_mdb);
  // The same requests without waiting (OPEN, CLOSE, TRIGGER): posted and
  // logged now, answered whenever a backend gets to them (the dom0 sound
  // proxy answers its guest at once and lets the splitter deliver). kRetry
  // while the ring is full or, on Xen, no pool exists yet.
  Result<void> submit(xensnd_req req);

  // Copies up to `bytes` of PCM into the shared buffer behind what was
  // written before and posts WRITE requests for it (split at period
  // boundaries and the buffer's end), never more than the buffer has free
  // (written - acked stays within it) and never into the ring's last 4
  // slots (kept for stream control). Returns the bytes taken (less if the
  // buffer or the ring is full).
  Result<size_t> write(const uint8_t* data, size_t bytes);
  // Plays out: waits until every write is acknowledged and the position has
  // reached the end (bounded by the audio left + 1 s).
  Result<void> drain();

  uint64_t written() const { return written_; }
  uint64_t acked() const { return st_.acked; }
  uint64_t position() const { return position_; }
  uint64_t opens() const { return opens_; }  // OPENs a backend answered OK (position() restarts at each)
  const sndif::StreamState& state() const { return st_; }
  std::chrono::milliseconds timeout{5000};
  // For tests: runs in pump() each time the ring has been read empty, just
  // before rsp_event is set again (a response the backend publishes here
  // brings no event).
  std::function<void()> on_ring_read_empty_for_test;

 private:
  Sndfront(ctl::Channel ch, std::unique_ptr<PoolSource> xen);
  // FrontendLink::Hooks
  Result<void> attached(FrontendLink& link) override;
  Result<FrontendLink::Repair> repair(const ctl::Msg& m) override;
  void resumed() override { kick(); }
  void kick();
  // The ring, event page, page directory and buffer over these pages.
  Result<void> use_pages(uint8_t* ring, uint8_t* evt, uint8_t* dir, uint8_t* buf);
  // Xen: a new pool for backend `domid`, the buffer's audio moved over.
  Result<ctl::XenPool> regrant(uint32_t domid);

  Result<uint16_t> post(xensnd_req req);
  Result<int32_t> call(xensnd_req req, xensnd_resp* out = nullptr);
  Result<void> take_responses();
  Result<void> take_events();
  void on_response(const xensnd_req& req, const xensnd_resp& rsp);
  void backend_fault(const std::string& why);
  void log_state();
  shadow::SplitterLog& log() { return link_.log(); }

  FrontendLink link_;
  std::unique_ptr<PoolSource> xen_;
  std::unique_ptr<platform::EventChannel> evt_chan_;  // Xen: the current pool's
  std::shared_ptr<void> pool_keep_;                   // Xen: the current backend's grants
  uint8_t* ring_page_ = nullptr;
  xensnd_event_page* evt_ = nullptr;
  uint8_t* dir_ = nullptr;
  uint8_t* buf_ = nullptr;  // kBufPages pages, contiguous
  std::optional<ring::FrontRing<sndif::Traits>> ring_;
  ring::IdTable ids_{sndif::kRingSize};
  std::map<uint16_t, xensnd_req> sent_;                    // in flight, by id (our own copy)
  std::map<uint16_t, std::pair<bool, xensnd_resp>> done_;  // answers to synchronous calls
  std::map<uint16_t, uint64_t> order_;                     // submission order of what is in flight
  std::map<uint16_t, bool> unwaited_;                      // submit()ted: nobody waits for the answer
  uint64_t next_order_ = 0;
  sndif::StreamState st_{};
  uint64_t written_ = 0;
  uint64_t position_ = 0;   // newest CUR_POS (never goes back for the player)
  uint64_t opens_ = 0;
  uint64_t pos_floor_ = 0;  // newest CUR_POS from the current backend incarnation
  uint16_t next_id_ = 0;
};

}  // namespace sd::front
