#include "frontend_link.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace sd::dom0 {

namespace {
// How long a frontend shadowd started may take to map its pool.
constexpr int kSpawnedAttachMs = 5000;
}  // namespace

FrontendSplitter::FrontendSplitter(boost::asio::io_context& io, platform::DevicePlumbing& plumbing, std::string what,
                                   uint64_t handle, size_t log_slots, std::filesystem::path socket)
    : io_(io),
      plumbing_(plumbing),
      what_(std::move(what)),
      handle_(handle),
      log_slots_(log_slots),
      socket_(std::move(socket)) {}

FrontendSplitter::~FrontendSplitter() { stop(); }

Result<void> FrontendSplitter::start(Events& ev, std::optional<ctl::Channel> spawned) {
  ev_ = &ev;
  if (spawned) {
    if (auto r = offer(std::move(*spawned)); !r) return r;
    // In a domain of its own, with its own memory, it takes the attach when it
    // comes up and answers only repairs. Otherwise ours to wait for: the
    // device is not up until the frontend has mapped everything.
    if (!plumbing_.frontend_in_guest()) {
      pollfd p{front_.fd(), POLLIN, 0};
      if (::poll(&p, 1, kSpawnedAttachMs) <= 0)
        return fail(Code::kEscalate, what_ + ": frontend did not attach within 5 s");
      auto m = front_.recv();
      if (!m || !*m || (*m)->type != ctl::MsgType::kDevAttached || (*m)->a != 0)
        return fail(Code::kEscalate,
                    what_ + ": frontend attach failed" + (m && *m ? ": " + (*m)->get_text() : std::string()));
    }
    (void)front_.set_nonblocking(true);
    ready_ = true;
    if (auto r = ev_->on_frontend_ready(); !r) return r;
    front_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(front_.fd()));
    arm_read();
    return {};
  }
  std::error_code ec;
  std::filesystem::create_directories(socket_.parent_path(), ec);
  auto ls = listen_frontend_socket(socket_, what_);
  if (!ls) return std::unexpected(ls.error());
  listen_ = std::move(*ls);
  listen_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(listen_.get()));
  arm_accept();
  return {};
}

// A fresh splitter log per frontend, then its end of the connection.
Result<void> FrontendSplitter::offer(ctl::Channel ch) {
  auto sh = new_splitter_log(log_slots_);
  if (!sh) return std::unexpected(sh.error());
  log_ = std::move(*sh);
  front_ = std::move(ch);
  ready_ = false;
  ev_->on_frontend_connected();
  if (auto r = plumbing_.offer_frontend(front_, ev_->frontend_attach(), log_.fd()); !r) {
    front_ = ctl::Channel();
    return r;
  }
  return {};
}

void FrontendSplitter::arm_accept() {
  if (!listen_wait_) return;
  listen_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this](const boost::system::error_code& ec) {
                             if (ec) return;
                             accept();
                             arm_accept();
                           });
}

void FrontendSplitter::accept() {
  UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd) return;
  ctl::Channel ch(std::move(fd));
  if (front_.valid()) {
    ctl::Msg no{.type = ctl::MsgType::kDevAttached, .a = EBUSY};
    no.set_text(what_ + " is in use by another frontend");
    (void)ch.send(no);
    return;
  }
  if (!offer(std::move(ch))) return;
  (void)front_.set_nonblocking(true);
  front_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(front_.fd()));
  arm_read();
}

// Every whole message to on_msg, then wait again; a failed or closed channel
// ends the frontend once.
void FrontendSplitter::arm_read() {
  if (!front_wait_) return;
  front_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;
    for (;;) {
      auto m = front_.recv();
      if (!m) return gone(m.error().message);
      if (!*m) break;
      on_msg(**m);
      if (!front_wait_) return;
    }
    arm_read();
  });
}

void FrontendSplitter::on_msg(const ctl::Msg& m) {
  switch (m.type) {
    case ctl::MsgType::kDevAttached:
      if (ready_) {
        // A refusal after the attach: it could not give a backend its ring.
        if (m.a != 0) ev_->on_repair_failed(Error{Code::kRestartReplay, "frontend: " + m.get_text()});
        return;
      }
      if (m.a != 0) return;
      ready_ = true;
      (void)ev_->on_frontend_ready();
      return;
    case ctl::MsgType::kReconnected: {
      if (!ready_) return;
      // A guest that grants its own pool answers only repairs for a new
      // backend, with the pool in place of the echoed mode.
      std::string mode = plumbing_.frontend_in_guest() ? "attach" : m.get_text();
      if (mode == "attach")
        if (auto r = plumbing_.frontend_repaired(m); !r) return ev_->on_repair_failed(r.error());
      ev_->on_repaired(m.a, mode);
      return;
    }
    case ctl::MsgType::kDevFault:
      ev_->on_bad_response(m.get_text());
      return;
    case ctl::MsgType::kDevConfig:
      ev_->on_config(m);
      return;
    default:
      return;  // nothing else is a frontend's to send
  }
}

void FrontendSplitter::gone(const std::string& why) {
  front_wait_.reset();
  front_ = ctl::Channel();
  bool was_ready = ready_;
  ready_ = false;
  if (was_ready) ev_->on_frontend_gone(why);
}

void FrontendSplitter::backend_gone() {
  (void)front_.send(ctl::Msg{.type = ctl::MsgType::kBackendGone, .b = handle_});
}

Result<void> FrontendSplitter::repair(const std::string& mode, platform::DomId domid) {
  // a = the new domain: a guest that grants its own pool grants it there.
  ctl::Msg m{.type = ctl::MsgType::kReconnect, .a = domid, .b = handle_};
  m.set_text(mode);
  return front_.send(m);
}

void FrontendSplitter::stop() {
  front_wait_.reset();
  front_ = ctl::Channel();
  ready_ = false;
  listen_wait_.reset();
  if (listen_) {
    listen_.reset();
    ::unlink(socket_.c_str());
  }
}

Result<shadow::SplitterLog> new_splitter_log(size_t slots) {
  auto sh = shadow::SplitterLog::create(static_cast<uint32_t>(slots));
  if (!sh) return sh;
  if (const char* v = std::getenv("SD_SPLITTER_LOG"); v && std::string(v) == "off") sh->set_enabled(false);
  return sh;
}

Result<UniqueFd> listen_frontend_socket(const std::filesystem::path& path, const std::string& what) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof(a.sun_path))
    return fail(Code::kInvalidInput, what + " socket path " + path.string() + " is too long (state_dir)");
  std::memcpy(a.sun_path, path.c_str(), path.string().size());
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) return sys_fail(what + " socket");
  ::unlink(path.c_str());  // left over from an unclean stop
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return sys_fail("bind " + path.string());
  ::chmod(path.c_str(), 0660);
  if (::listen(s.get(), 4) != 0) return sys_fail("listen " + path.string());
  return s;
}

}  // namespace sd::dom0
