// Where the guest's frames enter and leave the vif's beam splitter
// (Netfront). Two kinds, one interface: the guest's TAP device (sd-netfront
// in the guest's network namespace or domU, tap_port.cpp), and, for an
// unmodified Xen guest, its kernel's own netfront rings served from dom0
// (guest_port.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <sys/uio.h>

#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"
#include "sd/core/netif.hpp"

namespace sd::front {

class PacketPort {
 public:
  virtual ~PacketPort() = default;
  // Readable (poll) when the guest may have sent frames.
  virtual int wait_fd() const = 0;
  // wait_fd() was readable: take the wakeup and finish what waited on it.
  virtual void woken() {}
  // Whether frames for the guest wait in the port for room (then wait_fd()
  // is polled even while the tx ring is full).
  virtual bool holding() const { return false; }
  // What the port carries beyond one page per frame with whole checksums
  // (netif::kFeature*): the backend is asked for these frames only.
  virtual uint32_t features() const { return 0; }
  // The guest's next frame, filling `bufs` (pages, kPageSize each; one
  // is enough without kFeatureSg) in order, and its offloads: its size,
  // or 0 if none waits. Frames the port cannot carry are dropped inside it.
  virtual size_t read(std::span<uint8_t* const> bufs, netif::Offload& off) = 0;
  // A frame for the guest, in pieces, with its offloads; dropped if the
  // guest has no room, as a NIC does.
  virtual void write(std::span<const iovec> frame, const netif::Offload& off) = 0;
  // End of a batch of reads or writes: publish to the guest, notify it.
  virtual void flush() {}
  // The guest's own settings (MTU, promiscuous, multicast) where the port
  // can see them, applied to cfg.
  virtual void read_config(netif::VifConfig& cfg) { (void)cfg; }
  // Puts the guest's MTU back to `mtu` where the port can; false if not.
  virtual bool set_mtu(uint16_t mtu) { (void)mtu; return false; }
  // For messages.
  virtual std::string name() const = 0;
};

// The multicast addresses `ifname` has joined, from the text of
// /proc/net/dev_mcast ("index name users global hexaddr" per line), into
// cfg.mcast / cfg.n_mcast (at most 32; with more, all-multicast is set
// instead, as a NIC does when its filter overflows).
void parse_dev_mcast(const std::string& text, const std::string& ifname, netif::VifConfig& cfg);

// The guest's TAP device (IFF_TAP | IFF_NO_PI, non-blocking); the guest's
// tools configure it, so read_config() reads the interface. With
// IFF_VNET_HDR (open_tap: offloads on) its frames carry a virtio-net
// header: up to 64 KiB TCP segments and partial checksums, which netif
// carries as multi-slot frames with a GSO extra and csum_blank.
class TapPort final : public PacketPort {
 public:
  TapPort(UniqueFd fd, std::string ifname, bool vnet_hdr = false)
      : fd_(std::move(fd)), ifname_(std::move(ifname)), vnet_(vnet_hdr) {}
  // A TAP device `name` with this MAC and MTU; offloads: the virtio-net
  // header, checksum and TCP segmentation offload (TapPort's vnet_hdr).
  static Result<UniqueFd> open_tap(const std::string& name, const uint8_t mac[6], int mtu, bool offloads);
  int wait_fd() const override { return fd_.get(); }
  uint32_t features() const override { return vnet_ ? netif::kFeatureOffloads : 0; }
  size_t read(std::span<uint8_t* const> bufs, netif::Offload& off) override;
  void write(std::span<const iovec> frame, const netif::Offload& off) override;
  void read_config(netif::VifConfig& cfg) override;
  bool set_mtu(uint16_t mtu) override;
  std::string name() const override { return ifname_; }

 private:
  UniqueFd fd_;
  std::string ifname_;
  bool vnet_ = false;
  uint64_t dropped_ = 0;  // frames netif cannot carry (UDP segmentation, over 64 KiB)
};

}  // namespace sd::front
