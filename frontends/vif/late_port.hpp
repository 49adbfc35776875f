// The guest's side before it exists, and after it left. An unmodified
// guest's kernel netfront connects when the guest gets to it, possibly long
// after shadowd attached the driver domain; the proxy serves shadowd
// meanwhile. A thread runs the connect (retrying until it succeeds) and the
// port it returns takes over at the next wakeup; until then nothing is read
// and frames for the guest are dropped (its link is not up yet). While
// connected the thread asks `left` every half second; when the guest's side
// left (its netfront closed or reloaded, its domain gone) the port is
// dropped at the next wakeup (the rings unmapped), `released` runs and the
// connect starts over.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "vif/packet_port.hpp"

namespace sd::front {

class LatePort final : public PacketPort {
 public:
  // connect: blocks until the guest's side is there (or fails; retried a
  // second later).
  using Connect = std::function<Result<std::unique_ptr<PacketPort>>()>;
  LatePort(std::string name, Connect connect, std::function<bool()> left = {},
           std::function<void()> released = {});
  ~LatePort() override;

  int wait_fd() const override;
  void woken() override;
  bool holding() const override { return port_ && port_->holding(); }
  uint32_t features() const override { return 0; }  // known only once connected: one page per frame
  size_t read(std::span<uint8_t* const> bufs, netif::Offload& off) override {
    return port_ ? port_->read(bufs, off) : 0;
  }
  void write(std::span<const iovec> frame, const netif::Offload& off) override;
  void flush() override {
    if (port_) port_->flush();
  }
  void read_config(netif::VifConfig& cfg) override {
    if (port_) port_->read_config(cfg);
  }
  std::string name() const override { return name_; }
  bool connected() const { return port_ != nullptr; }
  uint64_t dropped_before() const { return dropped_; }
  uint64_t departures() const { return departures_; }  // times the guest's side left

 private:
  struct Shared;  // with the connect thread, which may outlive this port
  std::string name_;
  std::shared_ptr<Shared> shared_;
  UniqueFd epoll_;
  std::unique_ptr<PacketPort> port_;
  uint64_t dropped_ = 0;
  uint64_t departures_ = 0;
};

}  // namespace sd::front
