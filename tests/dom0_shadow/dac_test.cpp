// The virtual DAC (dom0_shadow/vsnd/dac.cpp): consumes what the driver
// produced, plays silence when starved, records both, and ignores register
// values a driver cannot legitimately write.
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
    auto d = sd::dom0::Dac::create(dir_ / "out.wav");
    ASSERT_TRUE(d.has_value());
    dac_ = std::move(*d);
  }
  void TearDown() override {
    dac_.reset();
    fs::remove_all(dir_);
  }
  // Produces `frames` marked frames starting at input index `first`.
  void produce(uint64_t first, uint64_t frames) {
    auto& r = dac_->regs();
    uint64_t wr = r.wr.load();
    for (uint64_t i = 0; i < frames; ++i) {
      int16_t f[2];
      sd::pcm::mark(first + i, f);
      std::memcpy(dac_->ring() + (wr + i * 4) % sd::sndif::kDacRing, f, 4);
    }
    r.wr.store(wr + frames * 4);
  }
  // The recording, once the DAC has written all it played.
  std::string wav() {
    EXPECT_TRUE(wait_until([&] { return dac_->frames_written() * 4 == dac_->regs().played.load(); }));
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
  dac_->regs().run.store(1);

  ASSERT_TRUE(wait_until([&] { return dac_->regs().rd.load() == 4800 * 4 && dac_->regs().starved.load() > 0; }));
  dac_->regs().run.store(0);
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

  EXPECT_EQ(dac_->regs().rd.load(), 0u);
  EXPECT_EQ(dac_->regs().played.load(), 0u);
}

TEST_F(DacTest, StarvedInTheMiddle_RecordingShowsTheGapAndNothingLost) {
  produce(0, 2400);
  dac_->regs().run.store(1);
  ASSERT_TRUE(wait_until([&] { return dac_->regs().starved.load() >= 2400 * 4; }));
  produce(2400, 2400);
  ASSERT_TRUE(wait_until([&] { return dac_->regs().rd.load() == 4800 * 4; }));
  dac_->regs().run.store(0);

  auto a = sd::pcm::analyze(wav());
  ASSERT_TRUE(a);
  ASSERT_EQ(a->gaps.size(), 1u);
  EXPECT_GE(a->gaps[0].silent, 2400u);
  EXPECT_EQ(a->gaps[0].skipped, 0);
  EXPECT_TRUE(a->complete(4800));
}

TEST_F(DacTest, ProducerIndexBeyondTheRing_CountedAsFaultAndIgnored) {
  dac_->regs().wr.store(sd::sndif::kDacRing * 3);  // claims more than the ring holds
  dac_->regs().run.store(1);

  ASSERT_TRUE(wait_until([&] { return dac_->regs().faults.load() > 0; }));
  EXPECT_EQ(dac_->regs().rd.load(), 0u);
}

TEST_F(DacTest, FlushTo_DropsWhatWasQueued) {
  produce(0, 4800);
  produce(4800, 4800);
  dac_->regs().flush_to.store(4800 * 4);  // STOP after the first half
  dac_->regs().run.store(1);

  ASSERT_TRUE(wait_until([&] { return dac_->regs().rd.load() == 9600 * 4; }));
  dac_->regs().run.store(0);
  auto a = sd::pcm::analyze(wav());
  ASSERT_TRUE(a);
  EXPECT_EQ(a->first_index, 4800u);
  EXPECT_EQ(a->marked, 4800u);
}

}  // namespace
