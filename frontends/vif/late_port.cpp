#include "vif/late_port.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace sd::front {

struct LatePort::Shared {
  std::mutex m;
  std::condition_variable cv;
  std::unique_ptr<PacketPort> port;
  bool drop = false;  // the guest's side left: drop the port in use
  UniqueFd ready{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
  std::atomic<bool> abandoned{false};
};

LatePort::LatePort(std::string name, Connect connect, std::function<bool()> left, std::function<void()> released)
    : name_(std::move(name)), shared_(std::make_shared<Shared>()), epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, shared_->ready.get(), &ev);
  std::thread([s = shared_, connect = std::move(connect), left = std::move(left), released = std::move(released),
               name = name_] {
    auto signal = [&] {
      uint64_t one = 1;
      (void)!::write(s->ready.get(), &one, sizeof(one));
    };
    while (!s->abandoned) {
      auto p = connect();
      if (!p) {
        std::fprintf(stderr, "sd-netfront: %s: %s (trying again)\n", name.c_str(), p.error().to_string().c_str());
        ::poll(nullptr, 0, 1000);
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(s->m);
        s->port = std::move(*p);
      }
      signal();
      if (!left) return;
      while (!s->abandoned && !left()) ::poll(nullptr, 0, 500);
      std::unique_lock<std::mutex> lock(s->m);
      s->drop = true;
      signal();
      s->cv.wait(lock, [&] { return !s->drop || s->abandoned; });
      lock.unlock();
      if (s->abandoned) return;
      if (released) released();
    }
  }).detach();
}

LatePort::~LatePort() {
  std::lock_guard<std::mutex> lock(shared_->m);
  shared_->abandoned = true;
  shared_->cv.notify_all();
}

// Readable when the thread has news or the port in use is (one fd for the
// caller's poll: an epoll set of both).
int LatePort::wait_fd() const { return epoll_.get(); }

void LatePort::woken() {
  if (port_) {
    pollfd p{port_->wait_fd(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) port_->woken();
  }
  uint64_t n;
  if (::read(shared_->ready.get(), &n, sizeof(n)) != sizeof(n)) return;
  std::lock_guard<std::mutex> lock(shared_->m);
  if (shared_->port) {
    port_ = std::move(shared_->port);
    epoll_event ev{};
    ev.events = EPOLLIN;
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, port_->wait_fd(), &ev);
    std::fprintf(stderr, "sd-netfront: %s: the guest's side is up\n", name_.c_str());
  }
  if (shared_->drop) {
    if (port_) (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, port_->wait_fd(), nullptr);
    port_.reset();  // the guest's rings unmapped
    shared_->drop = false;
    ++departures_;
    shared_->cv.notify_all();
    std::fprintf(stderr, "sd-netfront: %s: the guest's side left; waiting for it again\n", name_.c_str());
  }
}

void LatePort::write(std::span<const iovec> frame, const netif::Offload& off) {
  if (port_) return port_->write(frame, off);
  ++dropped_;
}

}  // namespace sd::front
