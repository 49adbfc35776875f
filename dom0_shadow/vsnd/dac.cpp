#include "vsnd/dac.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace sd::dom0 {

using sndif::kDacRing;

namespace {

constexpr uint64_t kTickNs = 5'000'000;  // 5 ms: 240 frames

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Canonical 44-byte PCM WAV header for `frames` frames of 48 kHz S16_LE stereo.
void wav_header(uint8_t h[44], uint64_t frames) {
  uint32_t data = static_cast<uint32_t>(std::min<uint64_t>(frames * sndif::kFrameBytes, 0xffffffffULL - 36));
  std::memcpy(h, "RIFF", 4);
  put32(h + 4, 36 + data);
  std::memcpy(h + 8, "WAVEfmt ", 8);
  put32(h + 16, 16);
  put16(h + 20, 1);
  put16(h + 22, sndif::kChannels);
  put32(h + 24, sndif::kRate);
  put32(h + 28, sndif::kRate * sndif::kFrameBytes);
  put16(h + 32, sndif::kFrameBytes);
  put16(h + 34, 16);
  std::memcpy(h + 36, "data", 4);
  put32(h + 40, data);
}

}  // namespace

Result<std::unique_ptr<Dac>> Dac::create(const std::filesystem::path& wav) {
  auto d = std::unique_ptr<Dac>(new Dac());
  d->mem_.reset(::memfd_create("sd-vsnd-dac", MFD_CLOEXEC));
  if (!d->mem_) return sys_fail("memfd_create DAC");
  if (::ftruncate(d->mem_.get(), sndif::kDacBytes) != 0) return sys_fail("ftruncate DAC");
  void* p = ::mmap(nullptr, sndif::kDacBytes, PROT_READ | PROT_WRITE, MAP_SHARED, d->mem_.get(), 0);
  if (p == MAP_FAILED) return sys_fail("mmap DAC");
  d->base_ = static_cast<uint8_t*>(p);
  d->regs_ = new (p) sndif::DacRegs{};
  d->regs_->magic = sndif::kDacMagic;
  d->irq_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!d->irq_) return sys_fail("eventfd DAC");
  d->wav_ = wav;
  d->new_wav_ = !wav.empty();
  d->thread_ = std::thread([dac = d.get()] { dac->run(); });
  return d;
}

Dac::~Dac() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  finish_wav();
  if (base_) ::munmap(base_, sndif::kDacBytes);
}

void Dac::restart_wav() { new_wav_ = !wav_.empty(); }

void Dac::finish_wav() {
  if (!out_) return;
  write_wav_header();
  std::fclose(out_);
  out_ = nullptr;
}

// Real-time loop: the frames owed are derived from the time the stream has
// been running, so late wake-ups are caught up and nothing drifts.
void Dac::run() {
  uint64_t next = mono_ns();
  uint64_t anchor = 0, done = 0;
  bool running = false;
  while (!stop_) {
    next += kTickNs;
    timespec ts{static_cast<time_t>(next / 1'000'000'000ULL), static_cast<long>(next % 1'000'000'000ULL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    if (new_wav_.exchange(false)) {
      finish_wav();
      out_ = std::fopen(wav_.c_str(), "wb");
      wav_frames_ = 0;
      if (out_) {
        uint8_t h[44];
        wav_header(h, 0);
        std::fwrite(h, 1, sizeof(h), out_);
      }
    }
    uint64_t now = mono_ns();
    if (regs_->run.load(std::memory_order_acquire) != 1) {
      running = false;  // halted: the clock restarts when it runs again
    } else {
      if (!running) {
        running = true;
        anchor = now;
        done = 0;
      }
      uint64_t target = (now - anchor) * sndif::kRate / 1'000'000'000ULL;
      if (target > done) {
        tick(target - done);
        done = target;
      }
    }
    uint64_t one = 1;
    (void)!::write(irq_.get(), &one, sizeof(one));
  }
}

void Dac::tick(uint64_t frames) {
  const uint64_t bytes = frames * sndif::kFrameBytes;
  uint64_t rd = regs_->rd.load(std::memory_order_relaxed);  // ours: only the DAC writes it
  // SAFETY: wr is written by the untrusted driver; read once, checked against
  // the ring's size before it selects any byte.
  uint64_t wr = regs_->wr.load(std::memory_order_acquire);
  uint64_t avail = wr - rd;
  if (wr < rd || avail > kDacRing) {
    regs_->faults.fetch_add(1);
    avail = 0;
  }
  // SAFETY: flush_to is untrusted too: honoured only inside (rd, wr].
  uint64_t flush = regs_->flush_to.load(std::memory_order_acquire);
  if (avail && flush > rd && flush <= wr) {
    rd = flush;
    avail = wr - rd;
  }
  uint64_t take = std::min(avail, bytes);
  take -= take % sndif::kFrameBytes;
  std::vector<uint8_t> out(bytes, 0);
  for (uint64_t i = 0; i < take;) {
    uint64_t off = (rd + i) % kDacRing;
    uint64_t n = std::min<uint64_t>(take - i, kDacRing - off);
    std::memcpy(out.data() + i, ring() + off, n);  // copied once; the driver may scribble, it is only audio
    i += n;
  }
  if (regs_->muted.load(std::memory_order_relaxed)) {
    std::fill(out.begin(), out.end(), 0);
  } else {
    for (int ch = 0; ch < 2; ++ch) {
      int32_t g = std::clamp<int32_t>(regs_->gain_mdb[ch].load(std::memory_order_relaxed), -100000, 0);
      if (g == 0) continue;
      double f = std::pow(10.0, g / 20000.0);
      for (uint64_t i = ch * 2; i + 1 < take; i += sndif::kFrameBytes) {
        int16_t s;
        std::memcpy(&s, out.data() + i, 2);
        s = static_cast<int16_t>(std::lround(s * f));
        std::memcpy(out.data() + i, &s, 2);
      }
    }
  }
  regs_->rd.store(rd + take, std::memory_order_release);
  regs_->starved.fetch_add(bytes - take, std::memory_order_relaxed);
  regs_->played.fetch_add(bytes, std::memory_order_release);
  if (out_) {
    std::fwrite(out.data(), 1, out.size(), out_);
    wav_frames_ += frames;
    write_wav_header();
  }
}

// Kept current after every tick, so that the WAV reads whole however shadowd ends.
void Dac::write_wav_header() {
  uint8_t h[44];
  wav_header(h, wav_frames_.load());
  std::fflush(out_);
  (void)!::pwrite(fileno(out_), h, sizeof(h), 0);
}

}  // namespace sd::dom0
