// Where the guest's frames enter and leave the vif's beam splitter
// (Netfront). Two kinds, one interface: the guest's TAP device (sd-netfront
// in the guest's network namespace or domU, tap_port.cpp), and, for an
// unmodified Xen guest, its kernel's own netfront rings served from dom0
// (guest_port.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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
  // The guest's next frame into buf (at most cap bytes): its size, or 0 if
  // none waits. Frames the port cannot carry are dropped inside it.
  virtual size_t read(uint8_t* buf, size_t cap) = 0;
  // A frame for the guest; dropped if the guest has no room, as a NIC does.
  virtual void write(const uint8_t* frame, size_t len) = 0;
  // End of a batch of reads or writes: publish to the guest, notify it.
  virtual void flush() {}
  // The guest's own settings (MTU, promiscuous, multicast) where the port
  // can see them, applied to cfg.
  virtual void read_config(netif::VifConfig& cfg) { (void)cfg; }
  // For messages.
  virtual std::string name() const = 0;
};

// The multicast addresses `ifname` has joined, from the text of
// /proc/net/dev_mcast ("index name users global hexaddr" per line), into
// cfg.mcast / cfg.n_mcast (at most 32; with more, all-multicast is set
// instead, as a NIC does when its filter overflows).
void parse_dev_mcast(const std::string& text, const std::string& ifname, netif::VifConfig& cfg);

// The guest's TAP device (IFF_TAP | IFF_NO_PI, non-blocking); the guest's
// tools configure it, so read_config() reads the interface.
class TapPort final : public PacketPort {
 public:
  TapPort(UniqueFd fd, std::string ifname) : fd_(std::move(fd)), ifname_(std::move(ifname)) {}
  int wait_fd() const override { return fd_.get(); }
  size_t read(uint8_t* buf, size_t cap) override;
  void write(const uint8_t* frame, size_t len) override;
  void read_config(netif::VifConfig& cfg) override;
  std::string name() const override { return ifname_; }

 private:
  UniqueFd fd_;
  std::string ifname_;
};

}  // namespace sd::front
