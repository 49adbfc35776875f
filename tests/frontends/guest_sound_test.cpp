// The vsnd dom0 ring proxy's guest side without Xen: the test plays the
// unmodified guest's snd-xen-front (its request ring, event page, granted
// buffer and page directory in memory) and the driver domain behind the
// vsnd beam splitter (Xen mode, pools in memory). What it checks: the guest
// is answered at once, also while no driver domain runs; what it asked for
// reaches the backend in its order (OPEN, the audio, TRIGGER); the position
// it is told is the one the backend reported; hostile requests are refused
// and never reach the backend.
#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <cstdlib>
#include <cstring>

#include "fake_guest_grants.hpp"
#include "sd/core/ring.hpp"
#include "sd/platform/local/event_channel.hpp"
#include "vsnd/guest_sound.hpp"
#include "sndfront_xen.hpp"

namespace sd::front {
namespace {

using sndif::kPageSize;
constexpr uint32_t kDirRef = 100, kBufRef0 = 200, kBufPages = 4;  // the guest's grants: a 16 KiB buffer
constexpr uint64_t kOutage = 24576;  // audio the proxy holds while no driver domain plays (small: the queue wraps)

UniqueFd efd() { return UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)); }

class GuestSoundTest : public SndfrontXen {
 protected:
  void SetUp() override {
    SndfrontXen::SetUp();
    // The guest: its ring and event page, its buffer pages and directory.
    ring_page_ = static_cast<uint8_t*>(std::aligned_alloc(4096, 4096));
    evt_page_ = static_cast<uint8_t*>(std::aligned_alloc(4096, 4096));
    std::memset(evt_page_, 0, 4096);
    auto fr = ring::FrontRing<sndif::Traits>::attach(ring_page_, kPageSize, true);
    ASSERT_TRUE(fr);
    guest_.emplace(std::move(*fr));
    auto grants = std::make_unique<GuestPages>();
    pages_ = grants.get();
    std::vector<uint8_t> dir(4096, 0);
    for (uint32_t i = 0; i < kBufPages; ++i) {
      uint32_t ref = kBufRef0 + i;
      std::memcpy(dir.data() + offsetof(xensnd_page_directory, gref) + i * 4, &ref, 4);
      pages_->pages[ref] = std::vector<uint8_t>(4096, 0);
    }
    pages_->pages[kDirRef] = dir;
    UniqueFd kick = efd(), notified = efd(), pos = efd();
    guest_kick_.reset(::dup(kick.get()));
    guest_notified_.reset(::dup(notified.get()));
    guest_pos_.reset(::dup(pos.get()));
    auto g = GuestSound::attach(ring_page_, evt_page_,
                                std::make_unique<local::LocalEventChannel>(std::move(notified), std::move(kick)),
                                std::make_unique<local::LocalEventChannel>(std::move(pos), efd()), std::move(grants),
                                *front_, "guest9 vsnd 0", nullptr, kOutage);
    ASSERT_TRUE(g) << g.error().to_string();
    proxy_ = std::move(*g);
    proxy_->now = [this] { return clock_; };
  }
  void TearDown() override {
    proxy_.reset();
    front_.reset();
    std::free(ring_page_);
    std::free(evt_page_);
  }
  // The guest's request, answered at once (the proxy serves once).
  xensnd_resp call(xensnd_req req) {
    req.id = next_id_++;
    EXPECT_TRUE(guest_->put_request(req));
    guest_->push_requests();
    uint64_t one = 1;
    EXPECT_EQ(::write(guest_kick_.get(), &one, sizeof(one)), 8);
    proxy_->serve();
    auto r = guest_->get_response();
    EXPECT_TRUE(r && *r) << "no answer";
    return r && *r ? **r : xensnd_resp{};
  }
  xensnd_req open_req(uint32_t rate = sndif::kRate, uint32_t dir = kDirRef) {
    xensnd_req r{};
    r.operation = XENSND_OP_OPEN;
    r.op.open.pcm_rate = rate;
    r.op.open.pcm_format = sndif::kFormat;
    r.op.open.pcm_channels = sndif::kChannels;
    r.op.open.buffer_sz = kBufPages * kPageSize;
    r.op.open.period_sz = 4096;
    r.op.open.gref_directory = dir;
    return r;
  }
  xensnd_req op(uint8_t operation, uint32_t a = 0, uint32_t b = 0) {
    xensnd_req r{};
    r.operation = operation;
    if (operation == XENSND_OP_TRIGGER) r.op.trigger.type = static_cast<uint8_t>(a);
    else r.op.rw = {a, b};
    return r;
  }
  // The guest puts audio in its buffer at `off`.
  std::vector<uint8_t> fill(uint32_t off, uint32_t len, uint8_t seed) {
    std::vector<uint8_t> a(len);
    for (uint32_t i = 0; i < len; ++i) {
      a[i] = static_cast<uint8_t>(seed + i * 3);
      pages_->pages[kBufRef0 + (off + i) / kPageSize][(off + i) % kPageSize] = a[i];
    }
    return a;
  }
  // Backend `domid` answers OK whatever it finds, recording it; then the
  // splitter is pumped and the proxy served, as its loop does.
  std::vector<xensnd_req> backend_serves(uint32_t domid) {
    std::vector<xensnd_req> seen;
    for (int round = 0; round < 5; ++round) {
      // init=false continues from the shared rsp_prod: requests answered
      // before are not seen again.
      auto r = ring::BackRing<sndif::Traits>::attach(pools_->bases_.at(domid), kPageSize, false);
      if (!r) return seen;
      for (auto q = r->get_request(); q && *q; q = r->get_request()) {
        seen.push_back(**q);
        (void)r->put_response(sndif::response_to(**q, 0));
      }
      r->push_responses();
      (void)pools_->kick(domid);
      for (int i = 0; i < 5; ++i) (void)front_->wait(5);
      proxy_->serve();
    }
    return seen;
  }
  // Backend `domid` reports the DAC's position through the splitter's event page.
  void backend_position(uint32_t domid, uint64_t pos) {
    auto* page = reinterpret_cast<xensnd_event_page*>(pools_->bases_.at(domid) + sndif::kEvtRef * kPageSize);
    xensnd_evt e{};
    e.type = XENSND_EVT_CUR_POS;
    e.op.cur_pos.position = pos;
    std::memcpy(&XENSND_IN_RING_REF(page, page->in_prod), &e, sizeof(e));
    __atomic_store_n(&page->in_prod, page->in_prod + 1, __ATOMIC_RELEASE);
    (void)pools_->kick(domid);
    for (int i = 0; i < 5; ++i) (void)front_->wait(5);
    proxy_->serve();
  }
  // Backend `domid` up, the guest's stream open and started, `bytes` of its
  // audio written from the buffer's start and taken by the backend.
  void playing(uint32_t domid, uint32_t bytes) {
    ASSERT_TRUE(reconnect(domid));
    EXPECT_EQ(call(open_req()).status, 0);
    (void)backend_serves(domid);
    EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);
    (void)fill(0, bytes, 3);
    EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, bytes)).status, 0);
    (void)backend_serves(domid);
  }
  std::vector<xensnd_evt> guest_events() {
    auto* page = reinterpret_cast<xensnd_event_page*>(evt_page_);
    std::vector<xensnd_evt> out;
    for (; guest_cons_ != page->in_prod; ++guest_cons_) out.push_back(XENSND_IN_RING_REF(page, guest_cons_));
    page->in_cons = guest_cons_;
    return out;
  }

  uint8_t* ring_page_ = nullptr;
  uint8_t* evt_page_ = nullptr;
  std::optional<ring::FrontRing<sndif::Traits>> guest_;
  GuestPages* pages_ = nullptr;
  UniqueFd guest_kick_, guest_notified_, guest_pos_;
  std::unique_ptr<GuestSound> proxy_;
  uint16_t next_id_ = 0;
  uint32_t guest_cons_ = 0;
  GuestSound::Clock::time_point clock_ = GuestSound::Clock::now();  // the proxy's, moved by the test
};

TEST_F(GuestSoundTest, HwParamQuery_NarrowedToWhatTheDacPlays_InFrames) {
  xensnd_req q = op(XENSND_OP_HW_PARAM_QUERY);
  q.op.hw_param.formats = (1ULL << XENSND_PCM_FORMAT_U8) | (1ULL << sndif::kFormat);
  q.op.hw_param.rates = {8000, 96000};
  q.op.hw_param.channels = {1, 8};
  q.op.hw_param.buffer = {1, 1u << 20};
  q.op.hw_param.period = {1, 1u << 20};

  auto r = call(q);

  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.resp.hw_param.formats, 1ULL << sndif::kFormat);
  EXPECT_EQ(r.resp.hw_param.rates.min, 48000u);
  EXPECT_EQ(r.resp.hw_param.rates.max, 48000u);
  EXPECT_EQ(r.resp.hw_param.channels.min, 2u);
  EXPECT_EQ(r.resp.hw_param.buffer.max, sndif::kMaxBuffer / 4);
  EXPECT_EQ(r.resp.hw_param.period.min, sndif::kMinPeriod / 4);
  q.op.hw_param.formats = 1ULL << XENSND_PCM_FORMAT_U8;
  EXPECT_EQ(call(q).status, -EINVAL);  // nothing left: the guest's plug layer converts
}

// Before any driver domain runs, the guest is answered at once; when one
// comes it gets OPEN, the audio (from the guest's buffer, at its offsets)
// and TRIGGER in the guest's order; the positions it reports reach the
// guest as CUR_POS events counted from 0.
TEST_F(GuestSoundTest, AnsweredAtOnceDeliveredInOrderPositionsRelayed) {
  EXPECT_EQ(call(open_req()).status, 0);
  auto a = fill(0, 8192, 11);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 8192)).status, 0);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);
  EXPECT_EQ(proxy_->queued_bytes(), 8192u);
  EXPECT_TRUE(guest_events().empty());

  ASSERT_TRUE(reconnect(7));
  proxy_->serve();
  auto seen = backend_serves(7);

  std::vector<uint8_t> ops;
  for (const auto& q : seen) ops.push_back(q.operation);
  EXPECT_EQ(ops, (std::vector<uint8_t>{XENSND_OP_OPEN, XENSND_OP_WRITE, XENSND_OP_WRITE, XENSND_OP_TRIGGER}));
  const uint8_t* buf7 = pools_->bases_.at(7) + sndif::kBufRef0 * kPageSize;
  uint32_t at = 0;
  for (const auto& q : seen) {
    if (q.operation != XENSND_OP_WRITE) continue;
    EXPECT_EQ(std::memcmp(buf7 + q.op.rw.offset, a.data() + at, q.op.rw.length), 0);
    at += q.op.rw.length;
  }
  EXPECT_EQ(at, 8192u);
  EXPECT_EQ(proxy_->queued_bytes(), 0u);

  backend_position(7, 4096);
  backend_position(7, 8192);
  auto ev = guest_events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].id, 0);
  EXPECT_EQ(ev[0].type, XENSND_EVT_CUR_POS);
  EXPECT_EQ(ev[0].op.cur_pos.position, 4096u);
  EXPECT_EQ(ev[1].id, 1);
  EXPECT_EQ(ev[1].op.cur_pos.position, 8192u);

  // At the guest's STOP its count goes to a whole buffer (see the tests
  // below); after it no position of the stopped stream is told (the guest
  // would apply it to its next one).
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_STOP)).status, 0);
  ev = guest_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].op.cur_pos.position, 16384u);
  (void)backend_serves(7);
  backend_position(7, 8192 + 4096);
  EXPECT_TRUE(guest_events().empty());
  EXPECT_EQ(proxy_->counters().refused, 0u);
}

// More audio than the proxy's queue holds, over time: the queue wraps
// (a guest page copied in two pieces) and every byte still reaches the
// backend whole, in order.
TEST_F(GuestSoundTest, AudioPastTheQueuesEnd_WrapsAndArrivesWhole) {
  ASSERT_TRUE(reconnect(7));
  EXPECT_EQ(call(open_req()).status, 0);
  (void)backend_serves(7);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);
  const uint32_t len = 4096 * 3 + 2048;  // 14 KiB a round, so the queue's end falls inside a page
  uint64_t total = 0;
  for (int round = 0; round < 12; ++round) {
    auto a = fill(0, len, static_cast<uint8_t>(round * 17));
    ASSERT_EQ(call(op(XENSND_OP_WRITE, 0, len)).status, 0) << "round " << round;
    auto seen = backend_serves(7);
    const uint8_t* buf7 = pools_->bases_.at(7) + sndif::kBufRef0 * kPageSize;
    uint32_t at = 0;
    for (const auto& q : seen) {
      if (q.operation != XENSND_OP_WRITE) continue;
      ASSERT_EQ(std::memcmp(buf7 + q.op.rw.offset, a.data() + at, q.op.rw.length), 0) << "round " << round;
      at += q.op.rw.length;
    }
    ASSERT_EQ(at, len) << "round " << round;
    total += at;
  }
  EXPECT_GT(total, sndif::kMaxBuffer + kOutage);  // past the queue's end at least once
  EXPECT_EQ(proxy_->queued_bytes(), 0u);
  EXPECT_EQ(proxy_->counters().bytes_in, total);
}

// The driver domain is gone longer than the guest's ALSA waits for a
// position (10 s): a second after the DAC stood still with the guest's audio
// waiting, the guest's position goes on at the real-time rate (as far as it
// wrote, and the proxy holds), its audio is kept and reaches the next
// backend whole; the STOP that ends its drain waits until the DAC played it
// all (a STOP drops what is not yet played).
TEST_F(GuestSoundTest, OutageLongerThanTheGuestWaits_PositionGoesOnAudioKeptDrainWaitsForTheDac) {
  using namespace std::chrono_literals;
  ASSERT_TRUE(reconnect(7));
  EXPECT_EQ(call(open_req()).status, 0);
  (void)backend_serves(7);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);
  (void)fill(0, 8192, 5);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 8192)).status, 0);
  (void)backend_serves(7);
  backend_position(7, 4096);
  ASSERT_EQ(guest_events().size(), 1u);
  // Backend 7 dies: the DAC's position stands at 4096.
  clock_ += 500ms;
  proxy_->serve();
  EXPECT_TRUE(guest_events().empty()) << "a short stall is waited out";
  clock_ += 1500ms;
  proxy_->serve();
  auto ev = guest_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].op.cur_pos.position, 8192u) << "as far as the guest wrote";
  // The guest fills its whole buffer again (it wraps).
  auto second = fill(8192, 8192, 77);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 8192, 8192)).status, 0);
  auto third = fill(0, 8192, 151);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 8192)).status, 0);
  second.insert(second.end(), third.begin(), third.end());
  clock_ += 1000ms;
  proxy_->serve();
  // A whole buffer at once is told in two halves: the guest's pointer
  // (modulo its buffer) would not move at all for a whole buffer.
  ev = guest_events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].op.cur_pos.position, 16384u);
  EXPECT_EQ(ev[1].op.cur_pos.position, 24576u);
  EXPECT_EQ(proxy_->lag(), 20480u);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_STOP)).status, 0);  // its drain ended

  pools_->bases_.erase(7);
  ASSERT_TRUE(reconnect(9));
  proxy_->serve();
  auto seen = backend_serves(9);
  std::vector<uint8_t> audio;
  const uint8_t* buf9 = pools_->bases_.at(9) + sndif::kBufRef0 * kPageSize;
  for (const auto& q : seen) {
    EXPECT_NE(q.operation, XENSND_OP_TRIGGER) << "the STOP went before the DAC played the stream";
    if (q.operation == XENSND_OP_WRITE) audio.insert(audio.end(), buf9 + q.op.rw.offset, buf9 + q.op.rw.offset + q.op.rw.length);
  }
  // Backend 7 had answered the first write (its audio is in the DAC): the
  // held audio follows.
  EXPECT_EQ(audio, second);
  backend_position(9, 24576);
  seen = backend_serves(9);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].operation, XENSND_OP_TRIGGER);
  EXPECT_EQ(seen[0].op.trigger.type, XENSND_OP_TRIGGER_STOP);
}

// snd-xen-front's pointer as Linux 6.1 keeps it: each CUR_POS's advance
// over the last, added modulo the buffer (reset only at hw_params). ALSA
// reads it as the position in the stream it counts from 0 at each prepare.
struct GuestPointer {
  uint64_t be_cur = 0, hw_ptr = 0, buffer_frames = kBufPages * kPageSize / sndif::kFrameBytes;
  void told(const std::vector<xensnd_evt>& ev) {
    for (const auto& e : ev) {
      uint64_t cur = e.op.cur_pos.position / sndif::kFrameBytes;
      hw_ptr = (hw_ptr + cur - be_cur) % buffer_frames;
      be_cur = cur;
    }
  }
  uint64_t bytes() const { return hw_ptr * sndif::kFrameBytes; }
};

// The guest underruns (it was told everything it wrote was played), ALSA
// stops the stream, prepares it again and starts it without a new OPEN,
// counting from 0: the guest's pointer is at 0 then too, so ALSA hears the
// new audio played as the DAC plays it (before, the pointer kept the old
// stream's place in the buffer, ALSA's count ran that far ahead of the DAC,
// and the drain at the stream's end stopped it early, dropping its tail).
TEST_F(GuestSoundTest, UnderrunThenStartedAgain_GuestPointerCountsTheNewAudioFromZero) {
  GuestPointer ptr;
  ASSERT_NO_FATAL_FAILURE(playing(7, 12288));
  backend_position(7, 12288);
  ptr.told(guest_events());
  EXPECT_EQ(ptr.bytes(), 12288u);
  // The player was late: nothing left to play, ALSA stops the stream.
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_STOP)).status, 0);
  auto ev = guest_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].op.cur_pos.position, 16384u);
  ptr.told(ev);
  EXPECT_EQ(ptr.bytes(), 0u) << "where ALSA counts from after its prepare";
  // Prepared again (no OPEN: snd-xen-front's stream is still open); the
  // player writes from the buffer's start and starts the stream.
  auto again = fill(0, 8192, 99);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 8192)).status, 0);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);
  auto seen = backend_serves(7);
  std::vector<uint8_t> ops;
  for (const auto& q : seen) ops.push_back(q.operation == XENSND_OP_TRIGGER ? 100 + q.op.trigger.type : q.operation);
  EXPECT_EQ(ops, (std::vector<uint8_t>{100 + XENSND_OP_TRIGGER_STOP, XENSND_OP_WRITE, XENSND_OP_WRITE,
                                       100 + XENSND_OP_TRIGGER_START}));
  backend_position(7, 12288 + 4096);
  ptr.told(guest_events());
  EXPECT_EQ(ptr.bytes(), 4096u) << "ALSA hears what the DAC played of the new audio";
  backend_position(7, 12288 + 8192);
  ptr.told(guest_events());
  EXPECT_EQ(ptr.bytes(), 8192u);
  EXPECT_EQ(proxy_->counters().refused, 0u);
}

// ALSA finds the underrun while the player's last WRITE is on its way: it
// does not count that audio (the WRITE returns into a stopped stream) and
// writes it again after its prepare. The proxy drops its own copy at the
// STOP, so the DAC plays that audio once (here while no driver domain
// runs, so all of it still waits in the proxy).
TEST_F(GuestSoundTest, UnderrunMetByTheLastWrite_ThatAudioPlaysOnce) {
  using namespace std::chrono_literals;
  EXPECT_EQ(call(open_req()).status, 0);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);
  auto heard = fill(0, 8192, 5);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 8192)).status, 0);
  proxy_->serve();
  clock_ += 2000ms;  // no driver domain: the guest's clock goes on, as far as it wrote
  proxy_->serve();
  ASSERT_EQ(guest_events().back().op.cur_pos.position, 8192u);
  (void)fill(8192, 4096, 99);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 8192, 4096)).status, 0);  // the WRITE the underrun met
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_STOP)).status, 0);
  EXPECT_EQ(proxy_->queued_bytes(), 8192u) << "the audio the guest did not count left the queue";
  auto again = fill(0, 4096, 99);  // after its prepare, from the buffer's start
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 4096)).status, 0);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);

  ASSERT_TRUE(reconnect(9));
  proxy_->serve();
  auto seen = backend_serves(9);
  backend_position(9, 8192);
  auto more = backend_serves(9);
  seen.insert(seen.end(), more.begin(), more.end());
  std::vector<uint8_t> audio;
  const uint8_t* buf9 = pools_->bases_.at(9) + sndif::kBufRef0 * kPageSize;
  for (const auto& q : seen)
    if (q.operation == XENSND_OP_WRITE) audio.insert(audio.end(), buf9 + q.op.rw.offset, buf9 + q.op.rw.offset + q.op.rw.length);
  heard.insert(heard.end(), again.begin(), again.end());
  EXPECT_EQ(audio, heard);
}

// The player drops its stream with audio not yet played (snd_pcm_drop) and
// starts again: the dropped audio still goes to the DAC in order (the STOP
// after it ends it there), but its positions are never told: the guest's
// count goes on from a whole buffer with the new audio only.
TEST_F(GuestSoundTest, DroppedThenStartedAgain_TheDroppedAudiosPositionsNeverTold) {
  GuestPointer ptr;
  ASSERT_NO_FATAL_FAILURE(playing(7, 12288));
  backend_position(7, 4096);
  ptr.told(guest_events());
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_STOP)).status, 0);
  auto ev = guest_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].op.cur_pos.position, 16384u);
  ptr.told(ev);
  auto seen = backend_serves(7);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].op.trigger.type, XENSND_OP_TRIGGER_STOP) << "not held: the guest dropped the rest";
  backend_position(7, 12288);  // the backend dropped the rest of its buffer: played, as positions count
  (void)fill(0, 4096, 40);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 4096)).status, 0);
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, 0);
  EXPECT_TRUE(guest_events().empty()) << "the dropped audio is not the new stream's";
  (void)backend_serves(7);
  backend_position(7, 12288 + 4096);
  ev = guest_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].op.cur_pos.position, 16384u + 4096u);
  ptr.told(ev);
  EXPECT_EQ(ptr.bytes(), 4096u);
}

TEST_F(GuestSoundTest, HostileRequests_RefusedNeverQueued) {
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 0, 4096)).status, -EINVAL);               // not open
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, XENSND_OP_TRIGGER_START)).status, -EINVAL);
  EXPECT_EQ(call(open_req(44100)).status, -EINVAL);                             // not the DAC's rate
  EXPECT_EQ(call(open_req(sndif::kRate, 999)).status, -EINVAL);                // directory not granted
  EXPECT_EQ(call(op(XENSND_OP_READ, 0, 4096)).status, -EOPNOTSUPP);             // capture
  EXPECT_EQ(call(op(XENSND_OP_SET_VOLUME, 0, 8)).status, -EOPNOTSUPP);
  EXPECT_EQ(call(open_req()).status, 0);
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 16000, 1000)).status, -EINVAL);           // past the buffer
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 2, 4)).status, -EINVAL);                  // not whole frames
  EXPECT_EQ(call(op(XENSND_OP_TRIGGER, 9)).status, -EINVAL);
  pages_->pages.erase(kBufRef0 + 1);                                           // the guest revoked a page
  EXPECT_EQ(call(op(XENSND_OP_WRITE, 4000, 200)).status, -EINVAL);
  EXPECT_EQ(proxy_->queued_bytes(), 0u);
  EXPECT_EQ(proxy_->counters().refused, 10u);

  // An impossible request index stops the port; nothing more is answered.
  auto* sring = reinterpret_cast<xen_sndif_sring*>(ring_page_);
  sring->req_prod += 100;
  uint64_t one = 1;
  ASSERT_EQ(::write(guest_kick_.get(), &one, sizeof(one)), 8);
  proxy_->serve();
  EXPECT_TRUE(proxy_->broken());
}

}  // namespace
}  // namespace sd::front
