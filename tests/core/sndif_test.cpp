// sndif checks (what a backend and the shadow accept from a guest) and the
// marked-PCM analysis the vsnd tests and benchmark measure gaps with.
#include <gtest/gtest.h>

#include <cstring>

#include "sd/core/pcm_marks.hpp"
#include "sd/core/sndif.hpp"

namespace {

using namespace sd;

xensnd_open_req good_open() {
  xensnd_open_req o{};
  o.pcm_rate = 48000;
  o.pcm_format = XENSND_PCM_FORMAT_S16_LE;
  o.pcm_channels = 2;
  o.buffer_sz = 38400;
  o.period_sz = 3840;
  o.gref_directory = sndif::kDirRef;
  return o;
}

TEST(SndifCheckOpen, SupportedParameters_Accepted) { EXPECT_EQ(sndif::check_open(good_open()), ""); }

TEST(SndifCheckOpen, OtherRate_RejectedNamingTheRate) {
  auto o = good_open();
  o.pcm_rate = 44100;
  EXPECT_NE(sndif::check_open(o).find("44100"), std::string::npos);
}

TEST(SndifCheckOpen, BufferBeyondTheGrantedPages_Rejected) {
  auto o = good_open();
  o.buffer_sz = sndif::kMaxBuffer + 4;
  EXPECT_NE(sndif::check_open(o).find("buffer_sz"), std::string::npos);
}

TEST(SndifCheckOpen, PeriodLongerThanBuffer_Rejected) {
  auto o = good_open();
  o.period_sz = o.buffer_sz + 4;
  EXPECT_NE(sndif::check_open(o).find("period_sz"), std::string::npos);
}

TEST(SndifCheckOpen, DirectoryNotTheGrantedOne_Rejected) {
  auto o = good_open();
  o.gref_directory = 999;
  EXPECT_NE(sndif::check_open(o).find("gref_directory"), std::string::npos);
}

TEST(SndifCheckRw, InsideTheBuffer_Accepted) { EXPECT_EQ(sndif::check_rw({3840, 3840}, 38400), ""); }

TEST(SndifCheckRw, RunningPastTheBufferEnd_Rejected) { EXPECT_NE(sndif::check_rw({36480, 3840}, 38400), ""); }

TEST(SndifCheckRw, WrappingLength_Rejected) { EXPECT_NE(sndif::check_rw({4, 0xfffffffc}, 38400), ""); }

TEST(SndifCheckRw, NotWholeFrames_Rejected) { EXPECT_NE(sndif::check_rw({2, 3840}, 38400), ""); }

TEST(SndifStatus, ZeroAndErrnos_Plausible) {
  EXPECT_TRUE(sndif::plausible_status(0));
  EXPECT_TRUE(sndif::plausible_status(-EINVAL));
}

TEST(SndifStatus, PositiveOrHuge_NotPlausible) {
  EXPECT_FALSE(sndif::plausible_status(7));
  EXPECT_FALSE(sndif::plausible_status(-100000));
}

// ---- marked PCM ------------------------------------------------------------

// The data chunk's size after the samples were edited.
std::string fix_size(std::string wav) {
  uint32_t n = static_cast<uint32_t>(wav.size() - 44);
  std::memcpy(&wav[40], &n, 4);
  return wav;
}

std::string with_silence(std::string wav, uint64_t at_frame, uint64_t frames) {
  wav.insert(44 + at_frame * 4, std::string(frames * 4, '\0'));
  return fix_size(wav);
}

TEST(PcmMarks, UnchangedRecording_CompleteWithoutGaps) {
  auto a = pcm::analyze(pcm::make_wav(100000));
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->complete(100000));
  EXPECT_TRUE(a->gaps.empty());
}

TEST(PcmMarks, SilenceInserted_OneGapOfExactlyThatManyFrames) {
  auto a = pcm::analyze(with_silence(pcm::make_wav(100000), 50000, 123));
  ASSERT_TRUE(a);
  ASSERT_EQ(a->gaps.size(), 1u);
  EXPECT_EQ(a->gaps[0].at, 50000u);
  EXPECT_EQ(a->gaps[0].silent, 123u);
  EXPECT_EQ(a->gaps[0].skipped, 0);
  EXPECT_TRUE(a->complete(100000));
}

TEST(PcmMarks, FramesDropped_GapCountsTheSkippedInput) {
  auto w = pcm::make_wav(100000);
  w.erase(44 + 60000 * 4, 960 * 4);
  auto a = pcm::analyze(fix_size(w));
  ASSERT_TRUE(a);
  ASSERT_EQ(a->gaps.size(), 1u);
  EXPECT_EQ(a->gaps[0].skipped, 960);
  EXPECT_EQ(a->gaps[0].silent, 0u);
  EXPECT_TRUE(a->complete(100000));
}

TEST(PcmMarks, FramesRepeated_NegativeSkip) {
  auto w = pcm::make_wav(100000);
  w.insert(44 + 70000 * 4, w.substr(44 + 69000 * 4, 1000 * 4));
  auto a = pcm::analyze(fix_size(w));
  ASSERT_TRUE(a);
  ASSERT_EQ(a->gaps.size(), 1u);
  EXPECT_EQ(a->gaps[0].skipped, -1000);
}

TEST(PcmMarks, ForeignFrame_NotComplete) {
  auto w = pcm::make_wav(1000);
  int16_t bad[2] = {-5, 3};
  std::memcpy(&w[44 + 500 * 4], bad, 4);
  auto a = pcm::analyze(w);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->foreign, 1u);
  EXPECT_FALSE(a->complete(1000));
}

TEST(PcmMarks, TruncatedTail_NotComplete) {
  auto w = pcm::make_wav(1000);
  w.resize(44 + 900 * 4);
  auto a = pcm::analyze(fix_size(w));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->end_index, 900u);
  EXPECT_FALSE(a->complete(1000));
}

TEST(PcmMarks, NotAWav_Nullopt) { EXPECT_FALSE(pcm::analyze("hello, world")); }

}  // namespace
