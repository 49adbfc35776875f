// The plugin's conversion to the card's format (48 kHz S16_LE stereo).
#include "vsnd/pcm_convert.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

using sd::front::PcmConverter;
using sd::front::SampleFormat;

std::vector<int16_t> samples(const std::vector<uint8_t>& out) {
  std::vector<int16_t> s(out.size() / 2);
  std::memcpy(s.data(), out.data(), s.size() * 2);
  return s;
}

TEST(PcmConvert, CardFormat_PassesThroughBitExact) {
  PcmConverter c(SampleFormat::kS16, 2, 48000);
  std::vector<uint8_t> in(4 * 100), out;
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7);
  c.convert(in.data(), 100, out);
  EXPECT_TRUE(c.passthrough());
  EXPECT_EQ(out, in);
}

TEST(PcmConvert, CdAudio_44100To48000_OneSecondStaysOneSecond) {
  PcmConverter c(SampleFormat::kS16, 2, 44100);
  std::vector<int16_t> in(2 * 44100);
  for (size_t i = 0; i < 44100; ++i) in[2 * i] = in[2 * i + 1] = static_cast<int16_t>(10000 * std::sin(i * 0.0627));
  std::vector<uint8_t> out;
  // In odd-sized pieces, as ALSA hands them over: the result must not depend on it.
  for (size_t at = 0; at < 44100; at += 441)
    c.convert(reinterpret_cast<const uint8_t*>(in.data() + 2 * at), std::min<size_t>(441, 44100 - at), out);
  EXPECT_NEAR(static_cast<double>(out.size() / 4), 48000.0, 2.0);
  EXPECT_NEAR(c.in_per_out(), 44100.0 / 48000.0, 1e-12);
}

TEST(PcmConvert, U8Mono_GoesToBothChannelsCentredOnZero) {
  PcmConverter c(SampleFormat::kU8, 1, 48000);
  std::vector<uint8_t> in{128, 128, 255, 0, 128}, out;
  c.convert(in.data(), in.size(), out);
  auto s = samples(out);
  ASSERT_EQ(s.size(), 2 * (in.size() - 1));  // one frame behind: interpolation needs the next
  EXPECT_EQ(s[0], 0);
  EXPECT_EQ(s[0], s[1]);
  EXPECT_GT(s[4], 32000);  // 255
  EXPECT_EQ(s[4], s[5]);
  EXPECT_LT(s[6], -32000);  // 0
}

TEST(PcmConvert, FivePointOne_FoldsIntoLeftAndRight) {
  PcmConverter c(SampleFormat::kFloat, 6, 48000);
  // FL FR RL RR C LFE: only the left side and the centre sound.
  std::vector<float> in{0.6f, 0.f, 0.6f, 0.f, 0.3f, 0.f, 0.6f, 0.f, 0.6f, 0.f, 0.3f, 0.f};
  std::vector<uint8_t> out;
  c.convert(reinterpret_cast<const uint8_t*>(in.data()), 2, out);
  auto s = samples(out);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_NEAR(s[0], 32767 * (0.6 + 0.6 + 0.3 + 0.0) / 4, 2);  // FL, RL, C, LFE
  EXPECT_NEAR(s[1], 32767 * (0.3 + 0.0) / 4, 2);              // FR, RR, C, LFE
}

TEST(PcmConvert, FloatNanAndOverRange_BecomeSilenceAndFullScale) {
  PcmConverter c(SampleFormat::kFloat, 2, 48000);
  std::vector<float> in{std::numeric_limits<float>::quiet_NaN(), 7.f, 0.f, 0.f};
  std::vector<uint8_t> out;
  c.convert(reinterpret_cast<const uint8_t*>(in.data()), 2, out);
  auto s = samples(out);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0], 0);
  EXPECT_EQ(s[1], 32767);
}

TEST(PcmConvert, S24AndS32_KeepTheirSign) {
  PcmConverter c24(SampleFormat::kS24, 1, 48000), c32(SampleFormat::kS32, 1, 48000);
  std::vector<int32_t> in24{-4194304, -4194304}, in32{1 << 30, 1 << 30};  // -0.5 and +0.5
  std::vector<uint8_t> out24, out32;
  c24.convert(reinterpret_cast<const uint8_t*>(in24.data()), 2, out24);
  c32.convert(reinterpret_cast<const uint8_t*>(in32.data()), 2, out32);
  EXPECT_NEAR(samples(out24)[0], -16384, 1);
  EXPECT_NEAR(samples(out32)[0], 16384, 1);
}

}  // namespace
