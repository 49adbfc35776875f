// vsnd backend: serves a guest's sndif ring (xen/io/sndif.h) by programming
// the virtual DAC shadowd lends it (register page + DMA ring, and the DAC's
// interrupt; shadowd keeps both across incarnations: a memfd and an eventfd
// locally, pages it shares and an event channel on Xen).
//
// A WRITE is answered once its bytes are in the DAC's DMA ring, so the pace
// of answers is the DAC's real-time pace. The backend fills the DMA ring up
// to two or three periods (sndif::dac_fifo); CUR_POS events go out every period played. STOP and CLOSE
// drop the writes queued before them, as hardware drops its FIFO. On attach
// it replays the stream state shadowd sends (OPEN parameters, volume, mute,
// trigger state, position) into the DAC and continues the ring from the
// shared rsp_prod.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "backend.hpp"
#include "granted_pages.hpp"
#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/sndif.hpp"

namespace sd::drvdom {

class Sndback final : public Backend {
 public:
  // pages: the guest's granted pool (sndif::kPoolPages, ring page first);
  // evt: the event channel to the frontend; dac: the DAC's memory shadowd
  // lends (registers + DMA ring, sndif::kDacBytes in one mapping); irq: the
  // DAC's interrupt. state: the stream to resume (open == 0: none).
  static Result<std::unique_ptr<Sndback>> create(std::unique_ptr<GrantedPages> pages,
                                                 std::unique_ptr<platform::EventChannel> evt,
                                                 std::unique_ptr<GrantedPages> dac,
                                                 std::unique_ptr<platform::EventChannel> irq,
                                                 const sndif::StreamState& state);
  ~Sndback() override;
  void poll_fds(std::vector<pollfd>& fds) override;
  Result<void> service() override;
  // Faults (inject): kBadId answers with an id not in flight; kBadProd with a
  // status that is neither 0 nor an errno; kBadGrant sends a CUR_POS event
  // whose position goes backwards.

 private:
  Sndback() = default;
  bool serve_queue();
  int32_t control(const xensnd_req& r);
  std::string open_stream(const xensnd_open_req& o);
  void program_dac();
  bool copy_to_dac(const xensnd_rw_req& rw);  // false: no room yet
  void respond(const xensnd_req& req, int32_t status);
  void send_position(bool force);

  std::unique_ptr<GrantedPages> pages_, dac_pages_;
  std::unique_ptr<platform::EventChannel> chan_, irq_;
  uint8_t* dac_ = nullptr;
  sndif::DacRegs* regs_ = nullptr;
  std::optional<ring::BackRing<sndif::Traits>> ring_;
  xensnd_event_page* evt_ = nullptr;
  std::deque<xensnd_req> queue_;  // consumed from the ring, in order, not yet answered
  sndif::StreamState st_{};
  std::vector<uint8_t*> buf_;  // the stream's buffer pages (from the page directory)
  uint64_t last_pos_ = 0;      // last CUR_POS sent
  uint16_t evt_id_ = 0;
  bool notify_ = false;
};

}  // namespace sd::drvdom
