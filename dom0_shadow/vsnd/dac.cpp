#include "vsnd/dac.hpp"

#include "sd/config/xl_cfg.hpp"

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

Result<std::unique_ptr<Dac>> Dac::create(const std::filesystem::path& wav, size_t voices) {
  if (voices == 0 || voices > config::kMaxVsndStreams)
    return fail(Code::kInvalidInput, "a DAC has 1 to " + std::to_string(config::kMaxVsndStreams) + " voices, not " +
                                         std::to_string(voices));
  auto d = std::unique_ptr<Dac>(new Dac());
  for (size_t k = 0; k < voices; ++k) {
    auto v = std::make_unique<Voice>();
    v->mem_.reset(::memfd_create("sd-vsnd-dac", MFD_CLOEXEC));
    if (!v->mem_) return sys_fail("memfd_create DAC");
    if (::ftruncate(v->mem_.get(), sndif::kDacBytes) != 0) return sys_fail("ftruncate DAC");
    void* p = ::mmap(nullptr, sndif::kDacBytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->mem_.get(), 0);
    if (p == MAP_FAILED) return sys_fail("mmap DAC");
    v->own_ = v->base_ = static_cast<uint8_t*>(p);
    v->regs_ = new (p) sndif::DacRegs{};
    v->regs_->magic = sndif::kDacMagic;
    v->irq_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!v->irq_) return sys_fail("eventfd DAC");
    d->voices_.push_back(std::move(v));
  }
  d->wav_ = wav;
  d->new_wav_ = !wav.empty();
  d->thread_ = std::thread([dac = d.get()] { dac->run(); });
  return d;
}

Dac::Voice::~Voice() {
  if (own_) ::munmap(own_, sndif::kDacBytes);
}

// The registers and the queued audio go with the memory: the next driver
// finds the voice as the last one left it.
void Dac::Voice::move_to(uint8_t* at, std::shared_ptr<void> keep, std::shared_ptr<platform::EventChannel> irq) {
  std::lock_guard lock(mu_);
  std::memcpy(at, base_, sndif::kDacBytes);
  base_ = at;
  regs_ = reinterpret_cast<sndif::DacRegs*>(at);
  keep_ = std::move(keep);  // the previous driver's pages are let go here
  lent_irq_ = std::move(irq);
}

Dac::~Dac() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  finish_wav();
}

void Dac::player_opened() {
  if (players_.fetch_add(1) == 0) new_wav_ = !wav_.empty();
}

void Dac::player_closed() {
  if (players_.load() > 0) players_.fetch_sub(1);
}

void Dac::finish_wav() {
  if (!out_) return;
  write_wav_header();
  std::fclose(out_);
  out_ = nullptr;
}

// Real-time loop: the frames owed are derived from the time the card has
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
    bool any = std::any_of(voices_.begin(), voices_.end(), [](const auto& v) {
      std::lock_guard lock(v->mu_);
      return v->regs().run.load(std::memory_order_acquire) == 1;
    });
    if (!any) {
      running = false;  // every voice halted: the clock restarts when one runs again
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
    for (auto& v : voices_) {
      (void)!::write(v->irq_fd(), &one, sizeof(one));
      std::lock_guard lock(v->mu_);
      if (v->lent_irq_) (void)v->lent_irq_->notify();  // a dead domain's port: nobody hears it
    }
  }
}

void Dac::tick(uint64_t frames) {
  std::vector<int32_t> mix(frames * sndif::kChannels, 0);
  bool any = false;
  for (auto& v : voices_) any |= take(*v, frames, mix);
  if (!any || !out_) return;
  std::vector<int16_t> out(mix.size());
  for (size_t i = 0; i < mix.size(); ++i) out[i] = static_cast<int16_t>(std::clamp(mix[i], -32768, 32767));
  std::fwrite(out.data(), sizeof(int16_t), out.size(), out_);
  wav_frames_ += frames;
  write_wav_header();
}

bool Dac::take(Voice& v, uint64_t frames, std::vector<int32_t>& mix) {
  std::lock_guard lock(v.mu_);
  auto& regs = v.regs();
  if (regs.run.load(std::memory_order_acquire) != 1) return false;
  const uint64_t bytes = frames * sndif::kFrameBytes;
  uint64_t rd = regs.rd.load(std::memory_order_relaxed);  // ours: only the DAC writes it
  // SAFETY: wr is written by the untrusted driver; read once, checked against
  // the ring's size before it selects any byte.
  uint64_t wr = regs.wr.load(std::memory_order_acquire);
  uint64_t avail = wr - rd;
  if (wr < rd || avail > kDacRing) {
    regs.faults.fetch_add(1);
    avail = 0;
  }
  // SAFETY: flush_to is untrusted too: honoured only inside (rd, wr].
  uint64_t flush = regs.flush_to.load(std::memory_order_acquire);
  if (avail && flush > rd && flush <= wr) {
    rd = flush;
    avail = wr - rd;
  }
  uint64_t take = std::min(avail, bytes);
  take -= take % sndif::kFrameBytes;
  if (!regs.muted.load(std::memory_order_relaxed)) {
    double gain[2];
    for (int ch = 0; ch < 2; ++ch) {
      int32_t g = std::clamp<int32_t>(regs.gain_mdb[ch].load(std::memory_order_relaxed), -100000, 0);
      gain[ch] = g == 0 ? 1.0 : std::pow(10.0, g / 20000.0);
    }
    for (uint64_t i = 0; i < take; i += 2) {
      int16_t s;
      // Copied once; the driver may scribble, it is only audio.
      std::memcpy(&s, v.ring() + (rd + i) % kDacRing, 2);
      size_t ch = (i / 2) % 2;
      mix[i / 2] += gain[ch] == 1.0 ? s : static_cast<int32_t>(std::lround(s * gain[ch]));
    }
  }
  regs.rd.store(rd + take, std::memory_order_release);
  regs.starved.fetch_add(bytes - take, std::memory_order_relaxed);
  regs.played.fetch_add(bytes, std::memory_order_release);
  return true;
}

// Kept current after every tick, so that the WAV reads whole however shadowd ends.
void Dac::write_wav_header() {
  uint8_t h[44];
  wav_header(h, wav_frames_.load());
  std::fflush(out_);
  (void)!::pwrite(fileno(out_), h, sizeof(h), 0);
}

}  // namespace sd::dom0
