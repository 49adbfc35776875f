// The virtual DAC (dom0_shadow/vsnd/dac.cpp): consumes what the driver
// produced, plays silence when starved, records both, ignores register
// values a driver cannot legitimately write, and mixes a card's voices.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "sd/core/pcm_marks.hpp"
#include "vsnd/dac.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

bool wait_until(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

class DacTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sd-dac-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto d = sd::dom0::Dac::create(dir_ / "out.wav", 2);
    ASSERT_TRUE(d.has_value());
    dac_ = std::move(*d);
  }
  void TearDown() override {
    dac_.reset();
    fs::remove_all(dir_);
  }
  // Produces `frames` marked frames starting at input index `first`.
  void produce(uint64_t first, uint64_t frames) {
    auto& r = regs();
    uint64_t wr = r.wr.load();
    for (uint64_t i = 0; i < frames; ++i) {
      int16_t f[2];
      sd::pcm::mark(first + i, f);
      std::memcpy(dac_->voice(0).ring() + (wr + i * 4) % sd::sndif::kDacRing, f, 4);
    }
    r.wr.store(wr + frames * 4);
  }
  // Produces `frames` frames of the constant sample (l, r) on voice k.
  void produce_constant(size_t k, uint64_t frames, int16_t l, int16_t r) {
    auto& v = dac_->voice(k);
    uint64_t wr = v.regs().wr.load();
    for (uint64_t i = 0; i < frames; ++i) {
      int16_t f[2] = {l, r};
      std::memcpy(v.ring() + (wr + i * 4) % sd::sndif::kDacRing, f, 4);
    }
    v.regs().wr.store(wr + frames * 4);
  }
  sd::sndif::DacRegs& regs(size_t k = 0) { return dac_->voice(k).regs(); }
  // The recording, once the DAC has written all it played.
  std::string wav() {
    EXPECT_TRUE(wait_until([&] {
      return dac_->frames_written() * 4 == std::max(regs(0).played.load(), regs(1).played.load());
    }));
    std::ifstream f(dir_ / "out.wav", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  fs::path dir_;
  std::unique_ptr<sd::dom0::Dac> dac_;
};

TEST_F(DacTest, Running_ConsumesEverythingProducedThenPlaysSilence) {
  produce(0, 4800);  // 100 ms
  regs().run.store(1);

  ASSERT_TRUE(wait_until([&] { return regs().rd.load() == 4800 * 4 && regs().starved.load() > 0; }));
  regs().run.store(0);
  auto a = sd::pcm::analyze(wav());
  ASSERT_TRUE(a);
  EXPECT_EQ(a->marked, 4800u);
  EXPECT_EQ(a->first_index, 0u);
  EXPECT_TRUE(a->gaps.empty());
  EXPECT_GT(a->tail_silence, 0u);
}

TEST_F(DacTest, Halted_ConsumesAndRecordsNothing) {
  produce(0, 4800);
  std::this_thread::sleep_for(50ms);

  EXPECT_EQ(regs().rd.load(), 0u);
  EXPECT_EQ(regs().played.load(), 0u);
}

TEST_F(DacTest, StarvedInTheMiddle_RecordingShowsTheGapAndNothingLost) {
  produce(0, 2400);
  regs().run.store(1);
  ASSERT_TRUE(wait_until([&] { return regs().starved.load() >= 2400 * 4; }));
  produce(2400, 2400);
  ASSERT_TRUE(wait_until([&] { return regs().rd.load() == 4800 * 4; }));
  regs().run.store(0);

  auto a = sd::pcm::analyze(wav());
  ASSERT_TRUE(a);
  ASSERT_EQ(a->gaps.size(), 1u);
  EXPECT_GE(a->gaps[0].silent, 2400u);
  EXPECT_EQ(a->gaps[0].skipped, 0);
  EXPECT_TRUE(a->complete(4800));
}

TEST_F(DacTest, ProducerIndexBeyondTheRing_CountedAsFaultAndIgnored) {
  regs().wr.store(sd::sndif::kDacRing * 3);  // claims more than the ring holds
  regs().run.store(1);

  ASSERT_TRUE(wait_until([&] { return regs().faults.load() > 0; }));
  EXPECT_EQ(regs().rd.load(), 0u);
}

TEST_F(DacTest, FlushTo_DropsWhatWasQueued) {
  produce(0, 4800);
  produce(4800, 4800);
  regs().flush_to.store(4800 * 4);  // STOP after the first half
  regs().run.store(1);

  ASSERT_TRUE(wait_until([&] { return regs().rd.load() == 9600 * 4; }));
  regs().run.store(0);
  auto a = sd::pcm::analyze(wav());
  ASSERT_TRUE(a);
  EXPECT_EQ(a->first_index, 4800u);
  EXPECT_EQ(a->marked, 4800u);
}

TEST_F(DacTest, TwoVoices_MixedSampleBySampleAndSaturated) {
  produce_constant(0, 4800, 1000, 30000);
  produce_constant(1, 4800, 234, 30000);
  regs(0).run.store(1);
  regs(1).run.store(1);

  ASSERT_TRUE(wait_until([&] { return regs(0).rd.load() == 4800 * 4 && regs(1).rd.load() == 4800 * 4; }));
  regs(0).run.store(0);
  regs(1).run.store(0);
  std::string w = wav();
  ASSERT_GT(w.size(), 44u);
  size_t mixed = 0;
  for (size_t off = 44; off + 4 <= w.size(); off += 4) {
    int16_t f[2];
    std::memcpy(f, w.data() + off, 4);
    if (f[0] == 0 && f[1] == 0) continue;  // silence while one voice started a tick later
    if (f[0] == 1234) {
      EXPECT_EQ(f[1], 32767);  // 30000 + 30000 saturates
      ++mixed;
    }
  }
  // Both voices started within a tick or two of each other: nearly all of the
  // 100 ms is heard as the sum.
  EXPECT_GT(mixed, 4000u);
  EXPECT_EQ(regs(0).faults.load() + regs(1).faults.load(), 0u);
}

TEST_F(DacTest, OneVoiceHalted_TheOtherPlaysAloneAndTheHaltedOneConsumesNothing) {
  produce_constant(0, 4800, 500, -500);
  produce_constant(1, 4800, 700, 700);
  regs(1).run.store(1);

  ASSERT_TRUE(wait_until([&] { return regs(1).rd.load() == 4800 * 4; }));
  regs(1).run.store(0);
  EXPECT_EQ(regs(0).rd.load(), 0u);
  EXPECT_EQ(regs(0).played.load(), 0u);
  std::string w = wav();
  size_t alone = 0;
  for (size_t off = 44; off + 4 <= w.size(); off += 4) {
    int16_t f[2];
    std::memcpy(f, w.data() + off, 4);
    alone += f[0] == 700 && f[1] == 700;
  }
  EXPECT_EQ(alone, 4800u);
}

TEST(DacCreate, VoicesOutOfRange_Refused) {
  EXPECT_FALSE(sd::dom0::Dac::create("", 0).has_value());
  EXPECT_FALSE(sd::dom0::Dac::create("", 9).has_value());
}

}  // namespace

// On Xen a voice moves, for each driver incarnation, into pages shared with
// the driver's domain: what was queued before the move plays from the new
// memory, nothing twice, and the new interrupt rings every tick.
TEST_F(DacTest, VoiceMovedToNewMemory_QueuedAudioPlaysOnceAndTheNewInterruptRings) {
  struct CountingIrq final : sd::platform::EventChannel {
    std::atomic<uint64_t> n{0};
    sd::Result<void> notify() override {
      ++n;
      return {};
    }
    int wait_fd() const override { return -1; }
    sd::Result<uint64_t> consume() override { return uint64_t{0}; }
  };
  produce(0, 2400);
  regs().run.store(1);
  ASSERT_TRUE(wait_until([&] { return regs().rd.load() > 0; }));

  auto mem = std::shared_ptr<uint8_t[]>(new uint8_t[sd::sndif::kDacBytes]());
  auto irq = std::make_shared<CountingIrq>();
  dac_->voice(0).move_to(mem.get(), mem, irq);
  EXPECT_EQ(&regs(), reinterpret_cast<sd::sndif::DacRegs*>(mem.get()));
  EXPECT_EQ(regs().magic, sd::sndif::kDacMagic);
  produce(2400, 2400);  // into the new memory
  ASSERT_TRUE(wait_until([&] { return regs().rd.load() == 4800 * 4 && irq->n.load() > 2; }));
  regs().run.store(0);

  auto a = sd::pcm::analyze(wav());
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->complete(4800));
  EXPECT_TRUE(a->gaps.empty());
}
