// The virtual DAC: the sound "hardware" on the host. It outlives every
// driver-domain incarnation: shadowd creates it once per vsnd and hands its
// register page + DMA ring (one memfd) and its interrupt (an eventfd) to each
// incarnation of the sound driver domain in turn.
//
// A thread consumes the DMA ring at exactly the real-time rate (48 kHz S16_LE
// stereo; the frame count is derived from the clock, so it does not drift),
// writes what it plays to a WAV file, plays silence when the ring is empty
// and counts it, and rings the eventfd every tick (5 ms) so the driver can
// refill. It records only while the driver has it running: a paused or
// stopped stream adds nothing to the WAV, so every silent run in the file is
// starvation. Register values written by the driver are untrusted: an
// impossible producer index or fifo size is counted as a fault and ignored.
#pragma once

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/sndif.hpp"

namespace sd::dom0 {

class Dac {
 public:
  // wav: where the played audio goes ("" = nowhere).
  static Result<std::unique_ptr<Dac>> create(const std::filesystem::path& wav);
  ~Dac();

  int mem_fd() const { return mem_.get(); }  // registers + DMA ring, for the driver
  int irq_fd() const { return irq_.get(); }  // the driver waits on this
  sndif::DacRegs& regs() { return *regs_; }
  uint8_t* ring() { return base_ + sndif::kDacRegsBytes; }

  // Starts a new WAV file (a new stream); the old one is finalised.
  void restart_wav();
  uint64_t frames_written() const { return wav_frames_.load(); }

 private:
  Dac() = default;
  void run();
  void tick(uint64_t frames);
  void finish_wav();
  void write_wav_header();  // out_ must be open

  UniqueFd mem_, irq_;
  uint8_t* base_ = nullptr;
  sndif::DacRegs* regs_ = nullptr;
  std::filesystem::path wav_;
  FILE* out_ = nullptr;
  std::atomic<uint64_t> wav_frames_{0};
  std::atomic<bool> new_wav_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sd::dom0
