// Marked PCM: a 48 kHz S16_LE stereo test signal in which every frame names
// its own index (left = index % 32767 + 1, right = index / 32767 % 32767 + 1,
// so no frame is silent), and the analysis that finds, sample-accurately,
// every gap in a recording of it: silence inserted, input frames skipped or
// repeated, frames that are not the input at all. Used by the vsnd
// end-to-end test, the demo and the benchmark.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace sd::pcm {

constexpr uint32_t kRate = 48000;
constexpr uint32_t kFrameBytes = 4;
constexpr uint64_t kMarkPeriod = 32767;

inline void mark(uint64_t index, int16_t out[2]) {
  out[0] = static_cast<int16_t>(index % kMarkPeriod + 1);
  out[1] = static_cast<int16_t>(index / kMarkPeriod % kMarkPeriod + 1);
}

// The index a frame names, or nullopt if it names none (silence or noise).
inline std::optional<uint64_t> index_of(int16_t l, int16_t r) {
  if (l < 1 || r < 1) return std::nullopt;
  return static_cast<uint64_t>(l - 1) + kMarkPeriod * static_cast<uint64_t>(r - 1);
}

// A canonical 44-byte-header WAV of `frames` marked frames.
inline std::string make_wav(uint64_t frames) {
  std::string w(44 + frames * kFrameBytes, '\0');
  auto put32 = [&](size_t at, uint32_t v) { std::memcpy(&w[at], &v, 4); };
  auto put16 = [&](size_t at, uint16_t v) { std::memcpy(&w[at], &v, 2); };
  std::memcpy(&w[0], "RIFF", 4);
  put32(4, static_cast<uint32_t>(36 + frames * kFrameBytes));
  std::memcpy(&w[8], "WAVEfmt ", 8);
  put32(16, 16);
  put16(20, 1);
  put16(22, 2);
  put32(24, kRate);
  put32(28, kRate * kFrameBytes);
  put16(32, kFrameBytes);
  put16(34, 16);
  std::memcpy(&w[36], "data", 4);
  put32(40, static_cast<uint32_t>(frames * kFrameBytes));
  for (uint64_t i = 0; i < frames; ++i) {
    int16_t f[2];
    mark(i, f);
    std::memcpy(&w[44 + i * kFrameBytes], f, kFrameBytes);
  }
  return w;
}

// One place where the recording departs from the input: `silent` frames of
// silence at output frame `at`, after which the input resumes `skipped`
// frames later than it would have (negative: that many frames repeated).
struct Gap {
  uint64_t at = 0;
  uint64_t silent = 0;
  int64_t skipped = 0;
  double ms() const { return static_cast<double>(silent) * 1000.0 / kRate; }
};

struct Analysis {
  uint64_t frames = 0;        // in the recording
  uint64_t marked = 0;        // frames that are input frames
  uint64_t foreign = 0;       // frames that are neither silence nor input
  uint64_t lead_silence = 0;  // before the first input frame
  uint64_t tail_silence = 0;  // after the last input frame
  uint64_t first_index = 0;   // input index of the first input frame
  uint64_t end_index = 0;     // one past the input index of the last input frame
  std::vector<Gap> gaps;      // in between
  // The recording is the input [0, input_frames) apart from the gaps.
  bool complete(uint64_t input_frames) const {
    int64_t skipped = 0;
    for (const auto& g : gaps) skipped += g.skipped;
    return foreign == 0 && first_index == 0 && end_index == input_frames &&
           static_cast<int64_t>(marked) + skipped == static_cast<int64_t>(input_frames);
  }
};

// Finds the "data" chunk of a PCM WAV (S16_LE stereo assumed) and analyses
// it; nullopt if it is not a WAV.
inline std::optional<Analysis> analyze(const std::string& wav) {
  if (wav.size() < 12 || wav.compare(0, 4, "RIFF") != 0 || wav.compare(8, 4, "WAVE") != 0) return std::nullopt;
  size_t at = 12, data = 0, len = 0;
  while (at + 8 <= wav.size()) {
    uint32_t n;
    std::memcpy(&n, &wav[at + 4], 4);
    if (wav.compare(at, 4, "data") == 0) {
      data = at + 8;
      len = std::min<size_t>(n, wav.size() - data);
      break;
    }
    at += 8 + n + (n & 1);
  }
  if (!data) return std::nullopt;
  Analysis a;
  a.frames = len / kFrameBytes;
  uint64_t silent = 0, expect = 0;
  bool seen = false;
  for (uint64_t i = 0; i < a.frames; ++i) {
    int16_t f[2];
    std::memcpy(f, &wav[data + i * kFrameBytes], kFrameBytes);
    if (f[0] == 0 && f[1] == 0) {
      ++silent;
      continue;
    }
    auto idx = index_of(f[0], f[1]);
    if (!idx) {
      ++a.foreign;
      continue;
    }
    if (!seen) {
      seen = true;
      a.first_index = *idx;
      a.lead_silence = silent;
    } else if (silent || *idx != expect) {
      a.gaps.push_back({i - silent, silent, static_cast<int64_t>(*idx) - static_cast<int64_t>(expect)});
    }
    silent = 0;
    ++a.marked;
    expect = *idx + 1;
  }
  a.end_index = expect;
  a.tail_silence = seen ? silent : 0;
  if (!seen) a.lead_silence = silent;
  return a;
}

}  // namespace sd::pcm
