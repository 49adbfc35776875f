// The vsnd class in shadowd's engine (local platform): one playback stream
// of a card. The card's streams share its virtual DAC (the sound hardware,
// which outlives driver domains and mixes the streams), each through its own
// voice. Players' ALSA plugins connect to <state_dir>/<guest>-vsnd-<n>.sock
// (the card's first stream) or <guest>-vsnd-<n>.<k>.sock (its stream k); the
// mix is recorded in <guest>-vsnd-<n>.wav. The state to replay is the
// stream from the splitter log (OPEN parameters, volume, mute, trigger,
// position).
//
// Active mode serves the ring at the DAC's pace: a write is acknowledged
// only once the DAC has played as much silence as the write holds audio. The
// DAC first plays out what the dead backend left in its FIFO, so an outage
// shorter than that FIFO (two or three periods, sndif::dac_fifo) is not
// heard at all, and a longer one costs no more than its length.
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "device_engine.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/sndif.hpp"
#include "vsnd/dac.hpp"

namespace sd::dom0 {

class VsndHooks final : public ClassHooks {
 public:
  VsndHooks(const std::string& guest, const config::DeviceSpec& spec, const std::filesystem::path& state_dir);
  ~VsndHooks() override;

  config::DeviceClass cls() const override { return config::DeviceClass::kVsnd; }
  size_t pool_pages() const override { return sndif::kPoolPages; }
  size_t log_slots() const override { return sndif::kRingSize; }
  Result<std::optional<ctl::Channel>> setup() override;
  std::filesystem::path socket_path() const override { return socket_; }
  void teardown() override;
  void frontend_connected() override;
  void frontend_gone() override;
  bool frontend_config(const ctl::Msg& m) override;
  void backend_payload(ctl::Msg& m) const override { m.set_payload(replay_state()); }
  // The DAC's voice: its fds locally, lent memory on Xen.
  platform::BackendResources backend_resources() const override {
    return {{voice_->mem_fd(), voice_->irq_fd()}, {}, voice_};
  }
  // For a guest's kernel snd-xen-front (Xen): its card, one PCM device with
  // this playback stream, in the one format the DAC plays.
  std::map<std::string, std::string> published_nodes() const override;
  // Shadowd serves the ring where it maps it (not on Xen, where the
  // guest's stream waits in the dom0 proxy meanwhile).
  std::string active_mode() const override { return engine().plumbing().page(sndif::kRingRef) ? "active" : ""; }
  void start_active() override;
  void stop_active() override;
  std::optional<Stall> progress(bool serving) override;
  nlohmann::json status() const override;

 private:
  sndif::StreamState replay_state() const;
  sndif::StreamState repaired_{};  // Xen: the stream as the splitter last reported it
  void arm_active();
  void active_tick();
  void active_position();
  void active_respond(const xensnd_req& r, int32_t status);
  int32_t active_control(const xensnd_req& r);

  std::filesystem::path state_dir_, socket_, wav_;
  std::string short_name_, unique_id_;
  size_t stream_ = 0, card_streams_ = 1;
  std::shared_ptr<Dac> dac_;  // the card's, shared by its streams
  Dac::Voice* voice_ = nullptr;  // this stream's
  bool player_ = false;
  uint64_t streams_ = 0;
  uint64_t last_starved_ = 0;
  int64_t starving_ms_ = 0;
  uint64_t last_wr_ = 0;                   // the DAC's producer index at the last look
  platform::Clock::time_point wr_moved_{};  // when it last moved
  std::optional<uint64_t> dry_reported_;      // the index a running-dry report was made at (one per stall)

  // Active mode: shadowd serves the ring.
  std::optional<ring::BackRing<sndif::Traits>> active_ring_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> active_wait_;
  std::deque<xensnd_req> active_queue_;
  sndif::StreamState ast_{};
  uint64_t starved0_ = 0, discarded_ = 0, active_last_pos_ = 0;
  uint64_t active_writes_ = 0, active_bytes_ = 0;
  uint16_t evt_id_ = 0;
  bool active_last_pos_changed_ = false;
};

}  // namespace sd::dom0
