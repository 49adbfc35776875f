// Xen's sndif ABI (xen/io/sndif.h) bound to the hardened rings, plus what
// the vsnd class shares between frontend, backend, shadow and the virtual
// DAC: the pool layout, the compacted stream state the shadow keeps and
// replays, the DAC's register block, and checks for everything that is read
// from an untrusted peer.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "sd/core/xen_ring_compat.h"
extern "C" {
#include <xen/io/sndif.h>
}

namespace sd::sndif {

struct Traits {
  using Sring = xen_sndif_sring;
  using Req = xensnd_req;
  using Rsp = xensnd_resp;
  static uint64_t req_id(const Req& r) { return r.id; }
  static uint64_t rsp_id(const Rsp& r) { return r.id; }
};

constexpr unsigned kPageSize = 4096;
constexpr unsigned kRingSize = 32;  // entries of a one-page sndif ring (64-byte slots)

// Grant refs in a vsnd pool: request ring, event page, the buffer's page
// directory, then the PCM buffer pages.
constexpr uint32_t kRingRef = 0;
constexpr uint32_t kEvtRef = 1;
constexpr uint32_t kDirRef = 2;
constexpr uint32_t kBufRef0 = 3;
constexpr uint32_t kBufPages = 32;
constexpr uint32_t kMaxBuffer = kBufPages * kPageSize;  // 128 KiB of PCM shared per stream
constexpr uint32_t kPoolPages = kBufRef0 + kBufPages;

// The one format the virtual DAC plays (HW_PARAM_QUERY answers this).
constexpr uint32_t kRate = 48000;
constexpr uint8_t kFormat = XENSND_PCM_FORMAT_S16_LE;
constexpr uint8_t kChannels = 2;
constexpr uint32_t kFrameBytes = 4;
constexpr uint32_t kMinPeriod = 256;    // bytes
constexpr uint32_t kMaxPeriod = 32768;  // bytes

// Trigger state of a stream as the shadow keeps it.
enum class Run : uint8_t { kStopped = 0, kRunning = 1, kPaused = 2 };

// The stream's state, compacted: the newest value of every setting plus the
// position, so replaying it costs the same after one change or a million.
// Written by the frontend into the splitter log after each successful
// response; replayed by shadowd into a new backend (kDevAttach payload).
struct StreamState {
  uint8_t open;  // an OPEN succeeded and no CLOSE since
  uint8_t run;   // Run
  uint8_t muted;
  uint8_t pad;
  xensnd_open_req params;  // as opened
  int32_t volume[2];       // per channel, as last set (sndif: 0.001 dB units)
  uint64_t acked;          // stream bytes the device accepted (WRITE responses OK)
  uint64_t generation;     // bumped on every change
};
static_assert(sizeof(StreamState) <= 200, "fits a control message payload and the splitter log config");

// The first bytes of a request are what the splitter log keeps: the header
// and every op but HW_PARAM_QUERY fit.
constexpr size_t kLoggedReq = 40;

// A request's parameters check out against the pool layout and the DAC.
// Returns an empty string or what is wrong.
inline std::string check_open(const xensnd_open_req& o) {
  if (o.pcm_rate != kRate) return "rate " + std::to_string(o.pcm_rate) + " not supported (48000 only)";
  if (o.pcm_format != kFormat) return "format " + std::to_string(o.pcm_format) + " not supported (S16_LE only)";
  if (o.pcm_channels != kChannels) return "channels " + std::to_string(o.pcm_channels) + " not supported (2 only)";
  if (o.buffer_sz == 0 || o.buffer_sz > kMaxBuffer || o.buffer_sz % kFrameBytes)
    return "buffer_sz " + std::to_string(o.buffer_sz) + " out of range (frames, <= 128 KiB)";
  if (o.period_sz < kMinPeriod || o.period_sz > kMaxPeriod || o.period_sz > o.buffer_sz || o.period_sz % kFrameBytes)
    return "period_sz " + std::to_string(o.period_sz) + " out of range";
  if (o.gref_directory != kDirRef) return "gref_directory " + std::to_string(o.gref_directory) + " not granted";
  return {};
}

inline std::string check_rw(const xensnd_rw_req& rw, uint32_t buffer_sz) {
  if (rw.length == 0 || rw.length % kFrameBytes || rw.offset % kFrameBytes || rw.offset >= buffer_sz ||
      rw.length > buffer_sz - rw.offset)
    return "write offset " + std::to_string(rw.offset) + " length " + std::to_string(rw.length) + " outside the " +
           std::to_string(buffer_sz) + "-byte buffer";
  return {};
}

// A response status is 0 or a negative errno.
inline bool plausible_status(int32_t s) { return s == 0 || (s < 0 && s > -4096); }

// The response to `req` with `status`; a HW_PARAM_QUERY gets the card's one
// configuration (both the backend and shadowd's active mode answer it).
inline xensnd_resp response_to(const xensnd_req& req, int32_t status) {
  xensnd_resp rsp{};
  rsp.id = req.id;
  rsp.operation = req.operation;
  rsp.status = status;
  if (req.operation == XENSND_OP_HW_PARAM_QUERY) {
    rsp.resp.hw_param.formats = 1ULL << kFormat;
    rsp.resp.hw_param.rates = {kRate, kRate};
    rsp.resp.hw_param.channels = {kChannels, kChannels};
    rsp.resp.hw_param.buffer = {kMinPeriod * 2, kMaxBuffer};
    rsp.resp.hw_param.period = {kMinPeriod, kMaxPeriod};
  }
  return rsp;
}

// Posts XENSND_EVT_CUR_POS `position` on an event page this side produces
// into, with the next of its event ids; false (nothing written, no id used)
// when the page is full by the peer's in_cons (read once, only compared):
// the next position supersedes this one. The caller notifies.
inline bool post_position(xensnd_event_page* page, uint16_t& next_id, uint64_t position) {
  uint32_t cons = std::atomic_ref<uint32_t>(page->in_cons).load(std::memory_order_acquire);
  uint32_t prod = std::atomic_ref<uint32_t>(page->in_prod).load(std::memory_order_relaxed);
  if (prod - cons >= XENSND_IN_RING_LEN) return false;
  xensnd_evt e{};
  e.id = next_id++;
  e.type = XENSND_EVT_CUR_POS;
  e.op.cur_pos.position = position;
  std::memcpy(&XENSND_IN_RING_REF(page, prod), &e, sizeof(e));
  std::atomic_ref<uint32_t>(page->in_prod).store(prod + 1, std::memory_order_release);
  return true;
}

inline std::string op_name(uint8_t op) {
  static const char* const kNames[] = {"OPEN",       "CLOSE", "READ",   "WRITE",   "SET_VOLUME",
                                       "GET_VOLUME", "MUTE",  "UNMUTE", "TRIGGER", "HW_PARAM_QUERY"};
  return op < 10 ? kNames[op] : "op " + std::to_string(op);
}

// ---- the virtual DAC's registers -------------------------------------------
// The DAC is host hardware that outlives driver domains: a register page plus
// a DMA ring of kDacRing bytes in one memfd, and an eventfd it rings every
// tick (its interrupt). The driver programs the format, run state and gain
// and produces into the ring (`wr`); the DAC consumes at real-time rate
// (`rd`) and plays silence when the ring is empty (`starved`). The DAC treats
// everything the driver writes as untrusted.
constexpr uint32_t kDacMagic = 0x53444143;  // "SDAC"
constexpr uint32_t kDacRing = 64 * 1024;
constexpr uint32_t kDacRegsBytes = 4096;
constexpr size_t kDacBytes = kDacRegsBytes + kDacRing;

// How much of the DAC's ring a stream keeps filled: three periods when the
// player's buffer holds more than four, else two. More is more margin (a
// restart or a scheduling delay shorter than it is not heard) and more
// latency between a write's acknowledgement and its sound.
inline uint32_t dac_fifo(const xensnd_open_req& o) {
  uint32_t periods = o.buffer_sz > 4 * o.period_sz ? 3 : 2;
  return std::min<uint32_t>(kDacRing, periods * o.period_sz);
}

struct DacRegs {
  uint32_t magic;
  std::atomic<uint32_t> run;         // driver: 1 = consume and play, 0 = halted (paused/stopped)
  std::atomic<uint32_t> fifo;        // driver: bytes of the ring it fills at most (<= kDacRing)
  std::atomic<uint32_t> muted;       // driver
  std::atomic<int32_t> gain_mdb[2];  // driver: per-channel gain, 0.001 dB (0 = unity, <= 0)
  std::atomic<uint64_t> wr;          // driver: total bytes produced
  std::atomic<uint64_t> flush_to;    // driver: drop what is queued up to here (STOP, CLOSE, OPEN)
  std::atomic<uint64_t> stream_wr;   // driver: stream bytes the DAC has received (0 at OPEN): a new
                                     // incarnation skips replayed writes the old one delivered
  std::atomic<uint64_t> rd;          // DAC: total bytes consumed
  std::atomic<uint64_t> starved;     // DAC: bytes of silence played while running with an empty ring
  std::atomic<uint64_t> played;      // DAC: bytes played while running (data + silence)
  std::atomic<uint64_t> faults;      // DAC: impossible register values seen (ignored)
};
static_assert(sizeof(DacRegs) <= kDacRegsBytes);

}  // namespace sd::sndif
