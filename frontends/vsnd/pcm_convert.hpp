// The player's PCM, in any rate (8-192 kHz), sample format (U8, S16, S24,
// S32, FLOAT) and channel count (1-8), made into the card's own: 48 kHz
// S16_LE stereo, what the virtual DAC plays. Used by the ALSA plugin, so
// that players and ALSA's plug/rate/dmix need not convert for it and any
// period or buffer they ask for can be honoured. The card's own format
// passes through untouched; anything else goes through float: channels past
// two folded into left and right, the rate changed by linear interpolation
// between the player's frames.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sd/core/sndif.hpp"

namespace sd::front {

enum class SampleFormat { kU8, kS16, kS24, kS32, kFloat };  // little endian; S24 in 4 bytes

class PcmConverter {
 public:
  static constexpr unsigned kMinRate = 8000, kMaxRate = 192000, kMaxChannels = 8;

  PcmConverter(SampleFormat f, unsigned channels, unsigned rate)
      : fmt_(f), ch_(std::clamp(channels, 1u, kMaxChannels)), rate_(rate),
        step_(static_cast<double>(rate) / sndif::kRate) {}

  size_t in_frame_bytes() const { return ch_ * sample_bytes(fmt_); }
  // Player frames one card frame stands for (1 when the rates match).
  double in_per_out() const { return step_; }
  bool passthrough() const { return fmt_ == SampleFormat::kS16 && ch_ == 2 && rate_ == sndif::kRate; }

  // Converts `frames` player frames at `in`, appending card frames to `out`.
  // State carries over between calls (the stream is one signal).
  void convert(const uint8_t* in, size_t frames, std::vector<uint8_t>& out) {
    if (passthrough()) {
      out.insert(out.end(), in, in + frames * sndif::kFrameBytes);
      return;
    }
    const size_t fb = in_frame_bytes();
    for (size_t i = 0; i < frames; ++i) {
      float l, r;
      stereo(in + i * fb, l, r);
      if (!primed_) {
        prev_l_ = l, prev_r_ = r, primed_ = true;
        continue;
      }
      // Card frames fall at pos_, pos_ + step, ... between prev and this frame.
      for (; pos_ < 1.0; pos_ += step_)
        put(out, prev_l_ + (l - prev_l_) * static_cast<float>(pos_), prev_r_ + (r - prev_r_) * static_cast<float>(pos_));
      pos_ -= 1.0;
      prev_l_ = l, prev_r_ = r;
    }
  }

  static size_t sample_bytes(SampleFormat f) {
    switch (f) {
      case SampleFormat::kU8: return 1;
      case SampleFormat::kS16: return 2;
      default: return 4;
    }
  }

 private:
  float sample(const uint8_t* p) const {
    switch (fmt_) {
      case SampleFormat::kU8: return (static_cast<float>(p[0]) - 128.f) / 128.f;
      case SampleFormat::kS16: {
        int16_t v;
        std::memcpy(&v, p, 2);
        return static_cast<float>(v) / 32768.f;
      }
      case SampleFormat::kS24: {
        uint32_t u;
        std::memcpy(&u, p, 4);
        auto v = static_cast<int32_t>(u << 8) >> 8;  // the low 24 bits, sign-extended
        return static_cast<float>(v) / 8388608.f;
      }
      case SampleFormat::kS32: {
        int32_t v;
        std::memcpy(&v, p, 4);
        return static_cast<float>(static_cast<double>(v) / 2147483648.0);
      }
      case SampleFormat::kFloat: {
        float v;
        std::memcpy(&v, p, 4);
        return std::isfinite(v) ? v : 0.f;  // the player's data: a NaN must not reach the card
      }
    }
    return 0.f;
  }

  // ALSA's channel order: FL FR RL RR C LFE SL SR. Left takes FL, RL, SL;
  // right FR, RR, SR; centre and LFE go to both; each side is averaged.
  void stereo(const uint8_t* frame, float& l, float& r) const {
    const size_t sb = sample_bytes(fmt_);
    if (ch_ == 1) {
      l = r = sample(frame);
      return;
    }
    float sl = 0, sr = 0, wl = 0, wr = 0;
    for (unsigned c = 0; c < ch_; ++c) {
      float v = sample(frame + c * sb);
      if (c == 4 || c == 5) {
        sl += v, sr += v, wl += 1, wr += 1;
      } else if (c % 2 == 0) {
        sl += v, wl += 1;
      } else {
        sr += v, wr += 1;
      }
    }
    l = sl / wl, r = sr / wr;
  }

  static void put(std::vector<uint8_t>& out, float l, float r) {
    int16_t s[2] = {to_s16(l), to_s16(r)};
    const auto* b = reinterpret_cast<const uint8_t*>(s);
    out.insert(out.end(), b, b + sizeof(s));
  }
  static int16_t to_s16(float v) { return static_cast<int16_t>(std::lrint(std::clamp(v, -1.f, 1.f) * 32767.f)); }

  SampleFormat fmt_;
  unsigned ch_, rate_;
  double step_;     // player frames per card frame
  double pos_ = 0;  // where the next card frame falls, in player frames after prev
  bool primed_ = false;
  float prev_l_ = 0, prev_r_ = 0;
};

}  // namespace sd::front
