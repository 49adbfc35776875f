// An unmodified Xen guest's own sound frontend (snd-xen-front), served from
// dom0 as the backend of one playback stream: the guest's request ring and
// event page (mapped from its grants), its two event channels, and copies
// out of the PCM buffer it grants (its page directory read at OPEN). This is
// the guest's side of the vsnd's dom0 ring proxy; the driver domain is
// reached through the vsnd beam splitter (Sndfront).
//
// snd-xen-front waits at most 3 s for each answer, and an outage of the
// driver domain may be longer, so the guest is answered here at once, as a
// shadow driver answers for its driver: a checked OPEN, TRIGGER or CLOSE is
// queued for the splitter (submitted unwaited, delivered in order to
// whichever backend comes), and the audio of a checked WRITE is copied out
// of the guest's buffer into the same queue, which the splitter drains as
// its own buffer frees. The guest is told (XENSND_EVT_CUR_POS) the
// splitter's position, what the DAC played, so it never writes over audio
// not yet played.
//
// While no driver domain plays (the DAC's position holds for kStall with
// the guest's audio waiting and its stream running) the guest's position
// goes on at the real-time rate and its audio waits here, up to kOutageMax
// of it: ALSA ends a stream whose position holds for 10 s, and a cold
// restart of a driver domain can take longer. The outage is then heard as
// a pause, nothing is dropped, and the stream plays that much later from
// then on (lag()). A STOP waits here until the DAC has played what the
// guest was told it played (at the end of a drain: all it wrote), since a
// STOP drops what the DAC has not played; audio written beyond that is
// dropped with it, as the guest itself drops it.
//
// After a STOP (an underrun, a drop, the end of a drain) ALSA may prepare
// and start the stream again without a new OPEN. It then counts from 0,
// while snd-xen-front's pointer goes on from the positions told, modulo
// its buffer (it resets only at hw_params); so at each STOP the guest's
// count is taken to a whole number of buffers, and the audio after the
// STOP is counted from there.
//
// Everything in the guest's pages is untrusted: a request that fails the
// checks (format, sizes, offsets inside the buffer, a directory or buffer
// page the guest's grant refuses) is answered -EINVAL (-EOPNOTSUPP for
// capture and volume) and never queued; an impossible ring index stops the
// port for good (reported once); a garbled event-page index only skips
// position reports.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/guest_grants.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/sndif.hpp"
#include "vsnd/sndfront.hpp"

namespace sd::front {

class GuestSound {
 public:
  static constexpr std::chrono::milliseconds kStall{1000};
  static constexpr uint64_t kOutageMax = 45ull * sndif::kRate * sndif::kFrameBytes;  // 45 s of audio
  struct Counters {
    uint64_t answered = 0;   // requests answered 0
    uint64_t refused = 0;    // requests answered an error
    uint64_t bytes_in = 0;   // audio taken from the guest
    uint64_t positions = 0;  // CUR_POS events sent
  };
  // ring, evt_page: the guest's mapped pages (kept alive by `keep`);
  // req_evt: the request ring's event channel (both ways); pos_evt: the
  // event page's (this side notifies); outage_max: the audio held while
  // no driver domain plays (whole frames).
  static Result<std::unique_ptr<GuestSound>> attach(void* ring, void* evt_page,
                                                    std::unique_ptr<platform::EventChannel> req_evt,
                                                    std::unique_ptr<platform::EventChannel> pos_evt,
                                                    std::unique_ptr<GuestGrants> grants, Sndfront& out,
                                                    std::string name, std::shared_ptr<void> keep = nullptr,
                                                    uint64_t outage_max = kOutageMax);

  // Readable when the guest posted requests.
  int wait_fd() const { return req_evt_->wait_fd(); }
  // Takes the guest's requests, feeds the splitter what is queued, tells the
  // guest its position. Call when wait_fd() is readable or after the
  // splitter was pumped.
  void serve();

  using Clock = std::chrono::steady_clock;
  std::function<Clock::time_point()> now = [] { return Clock::now(); };  // tests drive time

  bool broken() const { return !broken_.empty(); }
  uint64_t lag() const { return lag_; }  // bytes the guest heard as played beyond the DAC
  const std::string& why_broken() const { return broken_; }
  Counters counters() const { return counters_; }
  size_t queued_bytes() const { return queued_bytes_; }

 private:
  struct Item {  // what waits for the splitter, in the guest's order
    std::optional<xensnd_req> control;
    uint32_t audio = 0;  // else: bytes of audio_ (from its head) not yet taken by the splitter
    uint64_t hold_to = 0;  // a STOP waits until the DAC played this far (what the guest heard)
  };
  GuestSound() = default;
  int32_t handle(const xensnd_req& r, xensnd_resp& rsp);
  int32_t query(const xensnd_query_hw_param& q, xensnd_query_hw_param& out) const;
  int32_t open(const xensnd_open_req& o);
  int32_t write(const xensnd_rw_req& rw);
  void feed();
  uint64_t played() const;  // the DAC's position in the guest's stream (0 while its OPEN waits here)
  void keep_time();
  void report_position();
  void restart_count();
  void drop_after(uint64_t keep);
  void stop(const std::string& why);

  std::optional<ring::BackRing<sndif::Traits>> ring_;
  xensnd_event_page* evt_ = nullptr;
  std::unique_ptr<platform::EventChannel> req_evt_, pos_evt_;
  std::unique_ptr<GuestGrants> grants_;
  Sndfront* out_ = nullptr;
  std::string name_, broken_;
  std::shared_ptr<void> keep_;

  bool open_ = false, running_ = false;
  xensnd_open_req params_{};
  std::vector<uint32_t> buffer_refs_;  // the guest's buffer pages, from its directory at OPEN
  std::deque<Item> queue_;
  // The queued audio, in one buffer allocated once (no allocation per
  // WRITE): a guest's buffer and an outage, as a ring, queued_bytes_ of
  // them from head_. Not zeroed: its pages cost memory only once an outage
  // fills them.
  std::unique_ptr<uint8_t[]> audio_mem_;
  std::span<uint8_t> audio_;
  uint64_t outage_max_ = 0;
  size_t head_ = 0;
  size_t queued_bytes_ = 0;
  uint64_t opens_wanted_ = 0;  // the splitter's opens() once every queued OPEN is answered
  uint64_t reported_ = 0;      // the stream's position last told the guest
  // The guest's count where its stream restarted (after a STOP), and the
  // stream's position there: it is told told_base_ + (pos - stream_base_).
  uint64_t told_base_ = 0, stream_base_ = 0;
  // The stream since its OPEN: bytes the guest wrote, those the splitter
  // took, and the guest's clock while the DAC's stood still.
  uint64_t written_ = 0, delivered_ = 0, lag_ = 0;
  uint64_t last_played_ = 0;
  Clock::time_point moved_{}, ticked_{};
  uint16_t evt_id_ = 0;        // the guest counts events from 0 for the connection's life
  Counters counters_;
};

}  // namespace sd::front
