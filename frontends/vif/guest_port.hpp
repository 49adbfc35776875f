// An unmodified Xen guest's own netfront (Linux xen-netfront), served from
// dom0 as the guest's backend: its tx and rx rings (mapped from its grants),
// its event channel, and copies to and from the pages it grants per request.
// This is the guest's side of the dom0 ring proxy: Netfront relays what it
// reads here to the driver domain through the splitter, so the guest's ring
// never meets a driver domain and stays up across every crash.
//
// Everything in the guest's rings is untrusted. A frame that cannot be
// carried (shorter than an Ethernet header, longer than a page, a slot
// beyond its page, slot sizes that do not add up, more than kMaxSlots slots,
// extra-info slots, which the backend never offers) is answered
// NETIF_RSP_ERROR (extra slots NETIF_RSP_NULL) and dropped; an impossible ring index stops the port for good (the guest's
// ring is broken; nothing is read from it again) and is reported once.
// A frame from the driver domain is copied into the guest's next rx buffer
// (NETIF_RSP_OKAY = its length); without one it waits in a small fixed
// queue, then is dropped, as a NIC drops with no descriptors.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sd/core/platform.hpp"
#include "sd/core/ring.hpp"
#include "common/guest_grants.hpp"
#include "vif/packet_port.hpp"

namespace sd::front {

// Completes the TCP or UDP checksum (IPv4 or IPv6, after an optional VLAN
// tag) of a frame whose sender left it to the NIC (NETTXF_csum_blank:
// xen-netfront always offloads IPv4 checksums); any other frame, or one
// whose headers do not add up, is left as it is.
void complete_l4_checksum(uint8_t* frame, size_t len);

class GuestRingPort final : public PacketPort {
 public:
  struct Counters {
    uint64_t tx_frames = 0, rx_frames = 0;  // guest -> driver, driver -> guest
    uint64_t tx_refused = 0;                // frames answered ERROR
    uint64_t rx_dropped = 0;                // no rx buffer in time, or a frame the guest cannot take
  };
  static constexpr size_t kHeldFrames = 64;
  static constexpr size_t kMaxSlots = 18;  // XEN_NETBK_LEGACY_SLOTS_MAX
  static constexpr size_t kRxBatch = 64;   // frames copied to the guest per grant-copy call

  // tx/rx: the guest's shared ring pages (one page each, mapped by the
  // caller, kept alive by `keep`); evt: bound to the guest's port.
  static Result<std::unique_ptr<GuestRingPort>> attach(void* tx, void* rx,
                                                       std::unique_ptr<platform::EventChannel> evt,
                                                       std::unique_ptr<GuestGrants> grants, std::string name,
                                                       std::shared_ptr<void> keep = nullptr);

  int wait_fd() const override { return evt_->wait_fd(); }
  void woken() override;
  bool holding() const override { return held_count_ > 0; }
  size_t read(std::span<uint8_t* const> bufs, netif::Offload& off) override;
  void write(std::span<const iovec> frame, const netif::Offload& off) override;
  void flush() override;
  std::string name() const override { return name_; }

  bool broken() const { return !broken_.empty(); }
  const std::string& why_broken() const { return broken_; }
  const Counters& counters() const { return counters_; }

 private:
  GuestRingPort() = default;
  void stop(const std::string& why);
  void answer_tx(uint16_t id, int16_t status);
  // Answers a frame's slots after the first (more_data) ERROR, and its
  // extra-info slots NULL; false if the guest's ring is broken.
  bool drop_rest(const netif_tx_request& first);
  bool deliver(const uint8_t* frame, size_t len);
  void deliver_held();
  void copy_rx();  // the batch of frames for the guest: copied, then answered

  std::optional<ring::BackRing<netif::TxTraits>> tx_;
  std::optional<ring::BackRing<netif::RxTraits>> rx_;
  std::unique_ptr<platform::EventChannel> evt_;
  std::unique_ptr<GuestGrants> grants_;
  std::shared_ptr<void> keep_;
  std::string name_;
  std::string broken_;
  Counters counters_;
  bool tx_answered_ = false, rx_answered_ = false;
  GrantCopy rx_ops_[kRxBatch];    // frames taken an rx buffer for, not copied yet
  uint16_t rx_ids_[kRxBatch] = {};
  size_t rx_pending_ = 0;
  std::vector<uint8_t> held_;  // kHeldFrames pages, allocated once
  uint16_t held_len_[kHeldFrames] = {};
  size_t held_head_ = 0, held_count_ = 0;
};

}  // namespace sd::front
