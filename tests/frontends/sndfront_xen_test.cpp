// The vsnd beam splitter's Xen mode without Xen (the pool granted per
// backend domain by the frontend, as the dom0 ring proxy of an unmodified
// guest's sound card will): an in-memory PoolSource, the test playing
// shadowd and each backend incarnation, and pumping the splitter as its
// player does. What it checks: a call waits for the first pool, every
// backend domain gets its own pool (the old grants go first), and the
// writes in flight when a backend dies are replayed into the next backend's
// pool with their audio in its buffer, at the same offsets, and the stream
// they belong to is reported to shadowd with the repair.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <thread>

#include "sd/core/ring.hpp"
#include "sndfront_xen.hpp"

namespace sd::front {
namespace {

using sndif::kPageSize;

class SndfrontXenTest : public SndfrontXen {
 protected:
  void TearDown() override {
    stop_ = true;
    if (backend_.joinable()) backend_.join();
    front_.reset();
  }
  // Backend `domid` answers OK every request but WRITEs, which it leaves in
  // flight (it is about to die), until stop_.
  void serve_controls(uint32_t domid) {
    uint8_t* base = pools_->bases_.at(domid);
    backend_ = std::thread([this, base, domid] {
      auto ring = ring::BackRing<sndif::Traits>::attach(base, kPageSize, false);
      ASSERT_TRUE(ring);
      while (!stop_) {
        auto r = ring->get_request();
        if (!r || !*r) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          continue;
        }
        if ((*r)->operation == XENSND_OP_WRITE) {
          writes_.push_back(**r);
          continue;
        }
        (void)ring->put_response(sndif::response_to(**r, 0));
        ring->push_responses();
        pools_->kick(domid);
      }
    });
  }

  std::thread backend_;
  std::atomic<bool> stop_{false};
  std::vector<xensnd_req> writes_;  // the backend thread's, read after it stopped
};

TEST_F(SndfrontXenTest, WritesInFlightWhenBackendDies_ReplayedIntoNextPoolWithTheirAudio) {
  front_->timeout = std::chrono::milliseconds(300);
  auto early = front_->open(16384, 4096);
  EXPECT_FALSE(early) << "answered before any pool existed";

  auto r7 = reconnect(7);
  ASSERT_TRUE(r7);
  auto pool7 = r7->get_payload<ctl::XenPool>();
  EXPECT_EQ(pool7.port, 7u);
  EXPECT_EQ(pool7.pages, sndif::kPoolPages);
  serve_controls(7);
  front_->timeout = std::chrono::milliseconds(2000);
  ASSERT_EQ(front_->open(16384, 4096).value_or(-1), 0);
  ASSERT_EQ(front_->trigger(XENSND_OP_TRIGGER_START).value_or(-1), 0);
  std::vector<uint8_t> audio(8000);
  for (size_t i = 0; i < audio.size(); ++i) audio[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_EQ(front_->write(audio.data(), audio.size()).value_or(0), audio.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop_ = true;  // backend 7 dies with both writes unanswered
  backend_.join();
  ASSERT_EQ(writes_.size(), 2u);
  pools_->bases_.erase(7);

  auto r9 = reconnect(9);

  ASSERT_TRUE(r9);
  EXPECT_EQ(r9->a, 2u);  // both writes replayed
  ASSERT_TRUE(reported_);  // the stream the new backend resumes, for shadowd
  EXPECT_TRUE(reported_->open);
  EXPECT_EQ(reported_->run, static_cast<uint8_t>(sndif::Run::kRunning));
  EXPECT_EQ(reported_->params.buffer_sz, 16384u);
  EXPECT_EQ(reported_->acked, 0u);
  EXPECT_EQ(log_.events, (std::vector<std::string>{"make 7", "release 7", "make 9"}));
  uint8_t* base9 = pools_->bases_.at(9);
  auto ring9 = ring::BackRing<sndif::Traits>::attach(base9, kPageSize, false);
  ASSERT_TRUE(ring9);
  const uint8_t* buf9 = base9 + sndif::kBufRef0 * kPageSize;
  for (const auto& w : writes_) {
    auto r = ring9->get_request();
    ASSERT_TRUE(r && *r);
    EXPECT_EQ((*r)->id, w.id);
    EXPECT_EQ((*r)->operation, XENSND_OP_WRITE);
    EXPECT_EQ((*r)->op.rw.offset, w.op.rw.offset);
    EXPECT_EQ((*r)->op.rw.length, w.op.rw.length);
    EXPECT_EQ(std::memcmp(buf9 + w.op.rw.offset, audio.data() + w.op.rw.offset, w.op.rw.length), 0);
  }
  // The directory of the new pool lists its buffer pages.
  grant_ref_t first;
  std::memcpy(&first, base9 + sndif::kDirRef * kPageSize + offsetof(xensnd_page_directory, gref), sizeof(first));
  EXPECT_EQ(first, sndif::kBufRef0);

  for (const auto& w : writes_) (void)ring9->put_response(sndif::response_to(w, 0));
  ring9->push_responses();
  ASSERT_TRUE(pools_->kick(9));
  for (int i = 0; i < 100 && front_->acked() < audio.size(); ++i) (void)front_->wait(10);
  EXPECT_EQ(front_->acked(), audio.size());
}

// The sound proxy's way: OPEN and TRIGGER submitted without waiting (the
// guest is answered at once), taken by the backend in order; the stream is
// open and running once the backend answered them, as for the waited calls.
TEST_F(SndfrontXenTest, SubmittedControlRequests_DeliveredInOrderStateFollowsTheAnswers) {
  xensnd_req open{};
  open.operation = XENSND_OP_OPEN;
  open.op.open.pcm_rate = sndif::kRate;
  open.op.open.pcm_format = sndif::kFormat;
  open.op.open.pcm_channels = sndif::kChannels;
  open.op.open.buffer_sz = 16384;
  open.op.open.period_sz = 4096;
  EXPECT_FALSE(front_->submit(open)) << "no pool yet: the caller keeps it";
  ASSERT_TRUE(reconnect(7));
  auto sent = front_->submit(open);
  ASSERT_TRUE(sent) << sent.error().to_string();
  xensnd_req start{};
  start.operation = XENSND_OP_TRIGGER;
  start.op.trigger.type = XENSND_OP_TRIGGER_START;
  ASSERT_TRUE(front_->submit(start));
  xensnd_req write{};
  write.operation = XENSND_OP_WRITE;
  EXPECT_FALSE(front_->submit(write)) << "writes go through write()";
  EXPECT_FALSE(front_->state().open);

  auto ring = ring::BackRing<sndif::Traits>::attach(pools_->bases_.at(7), kPageSize, false);
  ASSERT_TRUE(ring);
  std::vector<uint8_t> ops;
  for (auto r = ring->get_request(); r && *r; r = ring->get_request()) {
    ops.push_back((*r)->operation);
    (void)ring->put_response(sndif::response_to(**r, 0));
  }
  EXPECT_EQ(ops, (std::vector<uint8_t>{XENSND_OP_OPEN, XENSND_OP_TRIGGER}));
  ring->push_responses();
  ASSERT_TRUE(pools_->kick(7));
  for (int i = 0; i < 100 && !front_->state().open; ++i) (void)front_->wait(10);
  EXPECT_TRUE(front_->state().open);
  EXPECT_EQ(front_->state().run, static_cast<uint8_t>(sndif::Run::kRunning));
  EXPECT_EQ(front_->state().params.buffer_sz, 16384u);
}

}  // namespace
}  // namespace sd::front
