#include "vif/late_port.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

namespace sd::front {

struct LatePort::Shared {
  std::mutex m;
  std::unique_ptr<PacketPort> port;
  UniqueFd ready{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
  std::atomic<bool> abandoned{false};
};

LatePort::LatePort(std::string name, Connect connect) : name_(std::move(name)), shared_(std::make_shared<Shared>()) {
  std::thread([s = shared_, connect = std::move(connect), name = name_] {
    while (!s->abandoned) {
      auto p = connect();
      if (p) {
        std::lock_guard<std::mutex> lock(s->m);
        s->port = std::move(*p);
        uint64_t one = 1;
        (void)!::write(s->ready.get(), &one, sizeof(one));
        return;
      }
      std::fprintf(stderr, "sd-netfront: %s: %s (trying again)\n", name.c_str(), p.error().to_string().c_str());
      ::poll(nullptr, 0, 1000);
    }
  }).detach();
}

LatePort::~LatePort() { shared_->abandoned = true; }

int LatePort::wait_fd() const { return port_ ? port_->wait_fd() : shared_->ready.get(); }

void LatePort::woken() {
  if (port_) return port_->woken();
  uint64_t n;
  if (::read(shared_->ready.get(), &n, sizeof(n)) != sizeof(n)) return;
  std::lock_guard<std::mutex> lock(shared_->m);
  port_ = std::move(shared_->port);
  if (port_) std::fprintf(stderr, "sd-netfront: %s: the guest's side is up\n", name_.c_str());
}

void LatePort::write(const uint8_t* frame, size_t len) {
  if (port_) return port_->write(frame, len);
  ++dropped_;
}

}  // namespace sd::front
