// The vsnd backend (driver_domain/vsnd/sndback.cpp) against a frontend and a
// DAC faked in this process: what it accepts from a guest, how it paces
// writes by the DAC's FIFO, and what it does with a replayed stream.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "sd/core/ring.hpp"
#include "sd/platform/local/event_channel.hpp"
#include "sd/core/sndif.hpp"
#include "vsnd/sndback.hpp"

namespace {

using namespace sd;

constexpr uint32_t kPeriod = 3840, kBuffer = 10 * kPeriod;

class SndbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (uint32_t i = 0; i < sndif::kPoolPages; ++i) {
      pool_[i].reset(::memfd_create("page", MFD_CLOEXEC));
      ASSERT_EQ(::ftruncate(pool_[i].get(), 4096), 0);
      page_[i] = static_cast<uint8_t*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, pool_[i].get(), 0));
    }
    for (uint32_t i = 0; i < sndif::kBufPages; ++i) {
      grant_ref_t ref = sndif::kBufRef0 + i;
      std::memcpy(page_[sndif::kDirRef] + offsetof(xensnd_page_directory, gref) + i * 4, &ref, 4);
    }
    auto fr = ring::FrontRing<sndif::Traits>::attach(page_[sndif::kRingRef], 4096, true);
    front_.emplace(std::move(*fr));
    dac_fd_.reset(::memfd_create("dac", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(dac_fd_.get(), sndif::kDacBytes), 0);
    void* p = ::mmap(nullptr, sndif::kDacBytes, PROT_READ | PROT_WRITE, MAP_SHARED, dac_fd_.get(), 0);
    regs_ = new (p) sndif::DacRegs{};
    regs_->magic = sndif::kDacMagic;
  }

  void attach(const sndif::StreamState& st = {}) {
    auto pages = std::make_unique<drvdom::GrantedPages>(sndif::kPoolPages);
    for (uint32_t i = 0; i < sndif::kPoolPages; ++i) pages->add(i, UniqueFd(::dup(pool_[i].get())));
    auto evt = std::make_unique<local::LocalEventChannel>(UniqueFd(::eventfd(0, EFD_NONBLOCK)),
                                                          UniqueFd(::eventfd(0, EFD_NONBLOCK)));
    auto dac = std::make_unique<drvdom::GrantedPages>(sndif::kDacBytes / 4096);
    ASSERT_EQ(dac->add(0, UniqueFd(::dup(dac_fd_.get()))), dac->size());
    auto irq = std::make_unique<local::LocalEventChannel>(UniqueFd(), UniqueFd(::eventfd(0, EFD_NONBLOCK)));
    auto b = drvdom::Sndback::create(std::move(pages), std::move(evt), std::move(dac), std::move(irq), st);
    ASSERT_TRUE(b.has_value()) << b.error().message;
    back_ = std::move(*b);
  }

  void post(xensnd_req r) {
    r.id = next_id_++;
    ASSERT_TRUE(front_->put_request(r));
    front_->push_requests();
  }
  xensnd_req open_req(uint32_t rate = 48000) {
    xensnd_req r{};
    r.operation = XENSND_OP_OPEN;
    r.op.open = {rate, XENSND_PCM_FORMAT_S16_LE, 2, 0, kBuffer, sndif::kDirRef, kPeriod};
    return r;
  }
  xensnd_req write_req(uint32_t off, uint32_t len) {
    xensnd_req r{};
    r.operation = XENSND_OP_WRITE;
    r.op.rw = {off, len};
    return r;
  }
  xensnd_req trigger_req(uint8_t type) {
    xensnd_req r{};
    r.operation = XENSND_OP_TRIGGER;
    r.op.trigger.type = type;
    return r;
  }
  // Responses published so far, in order.
  std::vector<xensnd_resp> responses() {
    std::vector<xensnd_resp> out;
    for (;;) {
      auto r = front_->get_response();
      if (!r || !*r) break;
      out.push_back(**r);
    }
    return out;
  }

  UniqueFd pool_[sndif::kPoolPages], dac_fd_;
  uint8_t* page_[sndif::kPoolPages] = {};
  sndif::DacRegs* regs_ = nullptr;
  std::optional<ring::FrontRing<sndif::Traits>> front_;
  std::unique_ptr<drvdom::Sndback> back_;
  uint16_t next_id_ = 0;
};

TEST_F(SndbackTest, OpenWithUnsupportedRate_AnsweredEinval) {
  attach();
  post(open_req(44100));

  ASSERT_TRUE(back_->service());
  auto rs = responses();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, -EINVAL);
}

TEST_F(SndbackTest, WriteRunningPastTheBuffer_AnsweredEinvalNothingPlayed) {
  attach();
  post(open_req());
  post(write_req(kBuffer - 4, kPeriod));

  ASSERT_TRUE(back_->service());
  auto rs = responses();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[1].status, -EINVAL);
  EXPECT_EQ(regs_->wr.load(), 0u);
}

TEST_F(SndbackTest, FifoFull_WriteWaitsButTriggerBehindItIsAnswered) {
  attach();
  post(open_req());
  for (uint32_t i = 0; i < 4; ++i) post(write_req(i * kPeriod, kPeriod));  // FIFO holds three periods
  post(trigger_req(XENSND_OP_TRIGGER_START));

  ASSERT_TRUE(back_->service());
  auto rs = responses();
  ASSERT_EQ(rs.size(), 5u);  // OPEN, three writes, TRIGGER; the fourth write waits
  EXPECT_EQ(rs[4].operation, XENSND_OP_TRIGGER);
  EXPECT_EQ(regs_->wr.load(), 3u * kPeriod);
  EXPECT_EQ(regs_->run.load(), 1u);
}

TEST_F(SndbackTest, ReplayedWriteTheDacAlreadyHas_AnsweredWithoutPlayingItTwice) {
  sndif::StreamState st{};
  st.open = 1;
  st.run = static_cast<uint8_t>(sndif::Run::kRunning);
  st.params = open_req().op.open;
  st.acked = 2 * kPeriod;
  regs_->wr.store(3 * kPeriod);  // the dead incarnation delivered a third period, then died unanswered
  regs_->rd.store(3 * kPeriod);
  regs_->stream_wr.store(3 * kPeriod);
  attach(st);
  post(write_req(2 * kPeriod, kPeriod));  // the replay of that third period
  post(write_req(3 * kPeriod, kPeriod));

  ASSERT_TRUE(back_->service());
  auto rs = responses();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].status, 0);
  EXPECT_EQ(regs_->wr.load(), 4u * kPeriod);  // only the new period went to the DAC
  EXPECT_EQ(regs_->run.load(), 1u);          // the trigger state was replayed
}

TEST_F(SndbackTest, ImpossibleRequestProducer_ServiceFails) {
  attach();
  // req_prod far beyond what a ring of 32 can hold.
  std::atomic_ref<RING_IDX>(reinterpret_cast<xen_sndif_sring*>(page_[sndif::kRingRef])->req_prod).store(1000);

  EXPECT_FALSE(back_->service());
}

}  // namespace
