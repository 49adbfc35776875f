#include "xen/fd_watcher.hpp"

#include <poll.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

namespace sd::xen {

namespace asio = boost::asio;

struct FdWatcher::State {
  explicit State(asio::io_context& ctx) : io(ctx) {}
  asio::io_context& io;
  // On a dup of the watched fd; reset (closed) by stop(), so it never
  // outlives the io_context even if a cancelled handler still holds State.
  std::unique_ptr<asio::posix::stream_descriptor> sd;
  short events = 0;
  ReadyFn on_ready;
  bool alive = true;
  // Bumped on every (re)arm: a handler of an older arming is stale.
  uint64_t gen = 0;
};

namespace {

using State = FdWatcher::State;

short poll_now(const State& st) {
  pollfd p{st.sd->native_handle(), st.events, 0};
  return ::poll(&p, 1, 0) > 0 ? p.revents : 0;
}

void dispatch(const std::shared_ptr<State>& st, uint64_t gen);

// Runs in order: drop the waits of the previous arming; if the fd is ready
// already, deliver on the next turn of the loop; otherwise wait for it.
void arm(const std::shared_ptr<State>& st) {
  ++st->gen;
  if (!st->alive) return;
  boost::system::error_code ignored;
  st->sd->cancel(ignored);
  if (st->events == 0) return;
  uint64_t gen = st->gen;
  if (poll_now(*st) != 0) {
    asio::post(st->io, [st, gen] { dispatch(st, gen); });
    return;
  }
  auto on_wait = [st, gen](const boost::system::error_code& ec) {
    if (!ec) dispatch(st, gen);
  };
  if (st->events & (POLLIN | POLLPRI)) st->sd->async_wait(asio::posix::stream_descriptor::wait_read, on_wait);
  if (st->events & POLLOUT) st->sd->async_wait(asio::posix::stream_descriptor::wait_write, on_wait);
}

void dispatch(const std::shared_ptr<State>& st, uint64_t gen) {
  if (!st->alive || gen != st->gen) return;  // stopped, or re-armed since
  short revents = poll_now(*st);
  if (revents != 0) {
    uint64_t before = ++st->gen;  // the sibling wait (read vs write) is stale now
    st->on_ready(revents);
    if (!st->alive || st->gen != before) return;  // stopped or re-armed by the callback
  }
  arm(st);
}

}  // namespace

Result<std::unique_ptr<FdWatcher>> FdWatcher::create(asio::io_context& io, int fd, short events, ReadyFn on_ready) {
  int copy = ::dup(fd);
  if (copy < 0) return sys_fail("dup of fd " + std::to_string(fd));
  auto st = std::make_shared<State>(io);
  st->sd = std::make_unique<asio::posix::stream_descriptor>(io);
  boost::system::error_code ec;
  st->sd->assign(copy, ec);
  if (ec) {
    ::close(copy);
    return fail(Code::kSystem, "cannot wait on fd " + std::to_string(fd) + ": " + ec.message());
  }
  st->events = events;
  st->on_ready = std::move(on_ready);
  arm(st);
  return std::unique_ptr<FdWatcher>(new FdWatcher(std::move(st)));
}

FdWatcher::~FdWatcher() {
  st_->alive = false;
  ++st_->gen;
  st_->sd.reset();  // closes the dup; pending waits complete as aborted
}

void FdWatcher::set_events(short events) {
  st_->events = events;
  arm(st_);
}

}  // namespace sd::xen
