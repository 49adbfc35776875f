// The virtual DAC: the sound "hardware" on the host. It outlives every
// driver-domain incarnation: shadowd creates it once per vsnd card and hands
// each incarnation of the sound driver domain, for each playback stream of
// the card, that stream's voice: a register page + DMA ring (one memfd) and
// an interrupt (an eventfd).
//
// A thread consumes every running voice's DMA ring at exactly the real-time
// rate (48 kHz S16_LE stereo; the frame count is derived from the clock, so
// it does not drift), mixes the voices (gain, mute, saturating sum), writes
// the mix to a WAV file, plays silence for a voice whose ring is empty and
// counts it, and rings every voice's eventfd each tick (5 ms) so the driver
// can refill. It records only while some voice runs: a paused or stopped
// card adds nothing to the WAV, so every silent run in the file is
// starvation. Register values written by the driver are untrusted: an
// impossible producer index or fifo size is counted as a fault and ignored.
#pragma once

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/sndif.hpp"

namespace sd::dom0 {

class Dac {
 public:
  // One playback stream's channel into the DAC. Lent to each driver
  // incarnation: locally as its memfd and eventfd, on Xen moved into pages
  // shared with the driver's domain (see platform::LentMemory).
  class Voice final : public platform::LentMemory {
   public:
    int mem_fd() const { return mem_.get(); }  // registers + DMA ring, for the driver
    int irq_fd() const { return irq_.get(); }  // the driver waits on this
    // Read and written on shadowd's io thread, where move_to() runs too.
    sndif::DacRegs& regs() const { return *regs_; }
    uint8_t* ring() const { return base_ + sndif::kDacRegsBytes; }
    size_t bytes() const override { return sndif::kDacBytes; }
    void move_to(uint8_t* at, std::shared_ptr<void> keep, std::shared_ptr<platform::EventChannel> irq) override;
    ~Voice() override;

   private:
    friend class Dac;
    UniqueFd mem_, irq_;
    uint8_t* own_ = nullptr;  // the memfd's mapping
    std::mutex mu_;           // the DAC's thread against move_to()
    uint8_t* base_ = nullptr;
    sndif::DacRegs* regs_ = nullptr;
    std::shared_ptr<void> keep_;                       // where base_ is, when not own_
    std::shared_ptr<platform::EventChannel> lent_irq_;  // the driver's domain's interrupt, when moved
  };

  // wav: where the played mix goes ("" = nowhere); voices: one per playback
  // stream of the card (1..config::kMaxVsndStreams).
  static Result<std::unique_ptr<Dac>> create(const std::filesystem::path& wav, size_t voices = 1);
  ~Dac();

  Voice& voice(size_t k) { return *voices_.at(k); }
  size_t voices() const { return voices_.size(); }

  // A player opened or closed one of the card's streams. The first player of
  // an idle card starts a new WAV file (the old one is finalised): a
  // recording holds what played while some player was connected.
  void player_opened();
  void player_closed();
  uint64_t frames_written() const { return wav_frames_.load(); }

 private:
  Dac() = default;
  void run();
  void tick(uint64_t frames);
  // Adds up to `frames` of voice v's ring into mix; false when it is halted.
  bool take(Voice& v, uint64_t frames, std::vector<int32_t>& mix);
  void finish_wav();
  void write_wav_header();  // out_ must be open

  std::vector<std::unique_ptr<Voice>> voices_;  // fixed after create()
  std::filesystem::path wav_;
  FILE* out_ = nullptr;
  std::atomic<uint64_t> wav_frames_{0};
  std::atomic<int> players_{0};
  std::atomic<bool> new_wav_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sd::dom0
