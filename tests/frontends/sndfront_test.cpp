// The vsnd beam splitter (frontends/vsnd/sndfront.cpp) against a fake
// shadowd and a fake backend in this process: what it logs, how it splits
// writes, what it reports as a backend fault, how it replays.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "sd/core/device_class.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/sndif.hpp"
#include "sd/core/splitter_log.hpp"
#include "vsnd/sndfront.hpp"

namespace sd {
// Polls `pred` every millisecond for up to 2 s.
inline bool e2e_wait(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}
}  // namespace sd

namespace {

using namespace sd;
using namespace std::chrono_literals;

// shadowd's side of the handshake plus a backend serving the ring from a
// thread with a pluggable answer.
class Harness {
 public:
  // Answer for one request: nullopt = do not answer (hold it).
  using Answer = std::function<std::optional<xensnd_resp>(const xensnd_req&)>;

  Harness() {
    auto p = ctl::Channel::pair();
    shadowd_ = std::move(p->first);
    auto log = shadow::SplitterLog::create(sndif::kRingSize);
    log_ = std::move(*log);
    to_back_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    to_front_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    for (uint32_t i = 0; i < sndif::kPoolPages; ++i) {
      pages_[i].reset(::memfd_create("page", MFD_CLOEXEC));
      (void)!::ftruncate(pages_[i].get(), 4096);
    }
    ring_page_ = static_cast<uint8_t*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, pages_[sndif::kRingRef].get(), 0));
    evt_ = static_cast<xensnd_event_page*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, pages_[sndif::kEvtRef].get(), 0));
    ctl::Msg att;
    att.type = ctl::MsgType::kDevAttach;
    att.a = static_cast<uint32_t>(sd::DeviceClass::kVsnd);
    att.b = 7;
    int fds[3] = {log_.fd(), to_back_.get(), to_front_.get()};
    (void)shadowd_.send_fds(att, fds, 3);
    int pfds[sndif::kPoolPages];
    for (uint32_t i = 0; i < sndif::kPoolPages; ++i) pfds[i] = pages_[i].get();
    ctl::Msg g;
    g.type = ctl::MsgType::kGrantFds;
    g.b = 7;
    (void)shadowd_.send_fds(g, pfds, sndif::kPoolPages);
    auto f = front::Sndfront::attach(std::move(p->second));
    EXPECT_TRUE(f.has_value()) << (f ? "" : f.error().message);
    if (f) front_ = std::move(*f);
    front_->timeout = 2000ms;
    attach_back();
  }
  ~Harness() { stop(); }

  void attach_back() {
    auto r = ring::BackRing<sndif::Traits>::attach(ring_page_, 4096, false);
    back_.emplace(std::move(*r));
  }
  void serve(Answer a) {
    answer_ = std::move(a);
    run_ = true;
    thread_ = std::thread([this] {
      while (run_) {
        {
          std::lock_guard<std::mutex> l(mu_);
          bool any = false;
          for (;;) {
            auto q = back_->get_request();
            if (!q || !*q) break;
            seen_.push_back(**q);
            if (auto rsp = answer_(**q)) {
              (void)back_->put_response(*rsp);
              any = true;
            }
          }
          if (any) {
            back_->push_responses();
            uint64_t one = 1;
            (void)!::write(to_front_.get(), &one, 8);
          }
        }
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  void stop() {
    run_ = false;
    if (thread_.joinable()) thread_.join();
  }
  static std::optional<xensnd_resp> ok(const xensnd_req& q) { return xensnd_resp{q.id, q.operation, 0, 0, {}}; }
  void post_position(uint64_t pos) {
    uint32_t prod = evt_->in_prod;
    xensnd_evt e{};
    e.type = XENSND_EVT_CUR_POS;
    e.op.cur_pos.position = pos;
    std::memcpy(&XENSND_IN_RING_REF(evt_, prod), &e, sizeof(e));
    std::atomic_ref<uint32_t>(evt_->in_prod).store(prod + 1);
    uint64_t one = 1;
    (void)!::write(to_front_.get(), &one, 8);
  }
  // The next message the frontend sent shadowd (bounded wait).
  std::optional<ctl::Msg> from_front(ctl::MsgType type) {
    auto deadline = std::chrono::steady_clock::now() + 2s;
    (void)shadowd_.set_nonblocking(true);
    while (std::chrono::steady_clock::now() < deadline) {
      (void)front_->pump();
      auto m = shadowd_.recv();
      if (m && *m && (*m)->type == type) return **m;
      std::this_thread::sleep_for(1ms);
    }
    return std::nullopt;
  }
  std::vector<xensnd_req> seen() {
    std::lock_guard<std::mutex> l(mu_);
    return seen_;
  }

  ctl::Channel shadowd_;
  shadow::SplitterLog log_;
  UniqueFd to_back_, to_front_;
  UniqueFd pages_[sndif::kPoolPages];
  uint8_t* ring_page_ = nullptr;
  xensnd_event_page* evt_ = nullptr;
  std::unique_ptr<front::Sndfront> front_;
  std::optional<ring::BackRing<sndif::Traits>> back_;
  Answer answer_;
  std::atomic<bool> run_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<xensnd_req> seen_;
};

constexpr uint32_t kPeriod = 3840, kBuffer = 10 * 3840;

TEST(Sndfront, Write_SplitAtPeriodsLoggedAndAcknowledged) {
  Harness h;
  h.serve(Harness::ok);
  ASSERT_EQ(h.front_->open(kBuffer, kPeriod).value_or(-1), 0);
  std::vector<uint8_t> pcm(3 * kPeriod + kPeriod / 2, 1);
  ASSERT_EQ(h.front_->write(pcm.data(), pcm.size()).value_or(0), pcm.size());
  ASSERT_TRUE(sd::e2e_wait([&] {
    (void)h.front_->pump();
    return h.front_->acked() == pcm.size();
  }));
  auto seen = h.seen();
  ASSERT_EQ(seen.size(), 5u);  // OPEN + 4 writes
  EXPECT_EQ(seen[4].op.rw.offset, 3 * kPeriod);
  EXPECT_EQ(seen[4].op.rw.length, kPeriod / 2);
  sndif::StreamState st{};
  ASSERT_EQ(h.log_.get_config(&st, sizeof(st)), sizeof(st));
  EXPECT_EQ(st.open, 1);
  EXPECT_EQ(st.acked, pcm.size());
}

// A caller that offers more than the buffer holds (the plugin's staging
// queue does) gets only what is free: unacknowledged audio in the buffer is
// never overwritten, and the request ring keeps room for stream control.
TEST(Sndfront, WriteBeyondTheBuffer_TakesOnlyWhatIsFreeUntilAcknowledged) {
  Harness h;
  h.serve([](const xensnd_req& q) -> std::optional<xensnd_resp> {  // writes stay unanswered
    if (q.operation == XENSND_OP_WRITE) return std::nullopt;
    return Harness::ok(q);
  });
  ASSERT_EQ(h.front_->open(kBuffer, kPeriod).value_or(-1), 0);
  std::vector<uint8_t> pcm(3 * kBuffer, 1);
  EXPECT_EQ(h.front_->write(pcm.data(), pcm.size()).value_or(0), kBuffer);
  EXPECT_EQ(h.front_->write(pcm.data(), pcm.size()).value_or(1), 0u);
  EXPECT_EQ(h.front_->written(), kBuffer);
}

// The backend notifies only when rsp_event lies among the responses it
// publishes. After a pump that took several responses, rsp_event still names
// the first of them; a response published after the frontend read the ring
// empty and before it set rsp_event again brings no event. The frontend must
// take it in that same pump (ring.h's RING_FINAL_CHECK_FOR_RESPONSES): the
// player polls event_fd and would otherwise sleep with the write acknowledged
// in the ring and never counted.
TEST(Sndfront, ResponsePublishedWhileRspEventIsArmed_TakenWithoutAnotherEvent) {
  Harness h;
  h.serve(Harness::ok);
  ASSERT_EQ(h.front_->open(kBuffer, kPeriod).value_or(-1), 0);
  h.stop();  // from here the test is the backend, step by step
  std::vector<uint8_t> pcm(3 * kPeriod, 1);
  ASSERT_EQ(h.front_->write(pcm.data(), pcm.size()).value_or(0), pcm.size());
  std::vector<xensnd_req> reqs;
  for (;;) {
    auto q = h.back_->get_request();
    ASSERT_TRUE(q);
    if (!*q) break;
    reqs.push_back(**q);
  }
  ASSERT_EQ(reqs.size(), 3u);
  // Two answers, with an event (rsp_event asked for the first of them).
  ASSERT_TRUE(h.back_->put_response(*Harness::ok(reqs[0])));
  ASSERT_TRUE(h.back_->put_response(*Harness::ok(reqs[1])));
  ASSERT_TRUE(h.back_->push_responses());
  uint64_t one = 1;
  ASSERT_EQ(::write(h.to_front_.get(), &one, 8), 8);
  // The third lands while the frontend is between reading the ring empty and
  // setting rsp_event again: the backend sees no reason to notify.
  int drained = 0;
  bool notified = true;
  h.front_->on_ring_read_empty_for_test = [&] {
    if (drained++ != 0) return;
    (void)h.back_->put_response(*Harness::ok(reqs[2]));
    notified = h.back_->push_responses();
  };
  ASSERT_TRUE(h.front_->pump());
  h.front_->on_ring_read_empty_for_test = nullptr;
  ASSERT_GE(drained, 1);
  EXPECT_FALSE(notified);
  pollfd p{h.front_->event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "an event is pending: the window was not the lost-wake-up one";
  // Taken in that one pump, with no further event to prompt another.
  EXPECT_EQ(h.front_->acked(), pcm.size());
}

TEST(Sndfront, WriteAnsweredWithNonErrnoStatus_ReportedAsWrongStatus) {
  Harness h;
  h.serve([](const xensnd_req& q) -> std::optional<xensnd_resp> {
    return xensnd_resp{q.id, q.operation, 0, q.operation == XENSND_OP_WRITE ? 7 : 0, {}};
  });
  ASSERT_EQ(h.front_->open(kBuffer, kPeriod).value_or(-1), 0);
  std::vector<uint8_t> pcm(kPeriod, 1);
  ASSERT_TRUE(h.front_->write(pcm.data(), pcm.size()));
  auto f = h.from_front(ctl::MsgType::kDevFault);
  ASSERT_TRUE(f);
  EXPECT_NE(f->get_text().find("wrong status 7"), std::string::npos) << f->get_text();
}

TEST(Sndfront, PositionGoingBackwards_ReportedAsFault) {
  Harness h;
  h.serve(Harness::ok);
  ASSERT_EQ(h.front_->open(kBuffer, kPeriod).value_or(-1), 0);
  std::vector<uint8_t> pcm(4 * kPeriod, 1);
  ASSERT_TRUE(h.front_->write(pcm.data(), pcm.size()));
  ASSERT_TRUE(sd::e2e_wait([&] {
    (void)h.front_->pump();
    return h.front_->acked() == pcm.size();
  }));
  h.post_position(3 * kPeriod);
  h.post_position(kPeriod);
  auto f = h.from_front(ctl::MsgType::kDevFault);
  ASSERT_TRUE(f);
  EXPECT_NE(f->get_text().find("went backwards"), std::string::npos) << f->get_text();
}

TEST(Sndfront, PositionBeyondWhatWasAcknowledged_ReportedAsFault) {
  Harness h;
  h.serve(Harness::ok);
  ASSERT_EQ(h.front_->open(kBuffer, kPeriod).value_or(-1), 0);
  h.post_position(1 << 20);
  auto f = h.from_front(ctl::MsgType::kDevFault);
  ASSERT_TRUE(f);
  EXPECT_NE(f->get_text().find("beyond"), std::string::npos) << f->get_text();
}

TEST(Sndfront, Reconnect_ReplaysUnansweredWritesInOrderIntoAFreshRing) {
  Harness h;
  h.serve([](const xensnd_req& q) -> std::optional<xensnd_resp> {
    if (q.operation == XENSND_OP_WRITE) return std::nullopt;  // the backend sits on writes, then dies
    return Harness::ok(q);
  });
  ASSERT_EQ(h.front_->open(kBuffer, kPeriod).value_or(-1), 0);
  std::vector<uint8_t> pcm(3 * kPeriod, 1);
  ASSERT_TRUE(h.front_->write(pcm.data(), pcm.size()));
  ASSERT_TRUE(sd::e2e_wait([&] { return h.seen().size() == 4; }));
  h.stop();
  ctl::Msg rc;
  rc.type = ctl::MsgType::kReconnect;
  rc.b = 7;
  rc.set_text("attach");
  ASSERT_TRUE(h.shadowd_.send(rc));
  auto done = h.from_front(ctl::MsgType::kReconnected);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->a, 3u);
  h.attach_back();  // a new backend takes the ring from rsp_prod (0 after the reset)
  std::vector<uint32_t> offsets;
  for (;;) {
    auto q = h.back_->get_request();
    ASSERT_TRUE(q);
    if (!*q) break;
    offsets.push_back((**q).op.rw.offset);
  }
  EXPECT_EQ(offsets, (std::vector<uint32_t>{0, kPeriod, 2 * kPeriod}));
}

}  // namespace
