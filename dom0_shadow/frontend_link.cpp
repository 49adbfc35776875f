#include "frontend_link.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "local/local_platform.hpp"

namespace sd::dom0 {

Result<void> send_pool_fds(ctl::Channel& ch, platform::GrantPool& pool, uint64_t handle,
                           std::optional<platform::DomId> peer) {
  auto* lp = dynamic_cast<local::LocalGrantPool*>(&pool);
  if (!peer && !lp) return fail(Code::kInvalidInput, "pool fds: owner fds exist on the local platform only");
  const auto pages = static_cast<uint32_t>(pool.pages());
  std::vector<UniqueFd> held;
  std::vector<int> batch;
  for (uint32_t first = 0; first < pages; first += ctl::Channel::kMaxFds) {
    held.clear();
    batch.clear();
    uint32_t end = std::min<uint32_t>(first + ctl::Channel::kMaxFds, pages);
    for (uint32_t ref = first; ref < end; ++ref) {
      if (!peer) {
        batch.push_back(lp->owner_fd(ref));
        continue;
      }
      auto fd = pool.fd_for_peer(ref, *peer);
      if (!fd) return std::unexpected(fd.error());
      batch.push_back(fd->get());
      held.push_back(std::move(*fd));
    }
    ctl::Msg m;
    m.type = ctl::MsgType::kGrantFds;
    m.a = first;
    m.b = handle;
    if (auto r = ch.send_fds(m, batch.data(), batch.size()); !r) return r;
  }
  return {};
}

std::optional<ctl::Channel> accept_frontend(int listen_fd, bool busy, const std::string& refusal) {
  UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd) return std::nullopt;
  ctl::Channel ch(std::move(fd));
  if (!busy) return ch;
  ctl::Msg no;
  no.type = ctl::MsgType::kDevAttached;
  no.a = EBUSY;
  no.set_text(refusal);
  (void)ch.send(no);
  return std::nullopt;
}

Result<shadow::SplitterLog> new_splitter_log(size_t slots) {
  auto sh = shadow::SplitterLog::create(slots);
  if (!sh) return sh;
  if (const char* v = std::getenv("SD_SPLITTER_LOG"); v && std::string(v) == "off") sh->set_enabled(false);
  return sh;
}

void read_frontend(std::unique_ptr<boost::asio::posix::stream_descriptor>& wait, ctl::Channel& ch,
                   std::function<void(const ctl::Msg&)> on_msg, std::function<void(const std::string&)> on_closed) {
  if (!wait) return;
  wait->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                   [&wait, &ch, on_msg = std::move(on_msg), on_closed = std::move(on_closed)](
                       const boost::system::error_code& ec) mutable {
                     if (ec) return;
                     for (;;) {
                       auto m = ch.recv();
                       if (!m) return on_closed(m.error().message);
                       if (!*m) break;
                       on_msg(**m);
                       if (!wait) return;
                     }
                     read_frontend(wait, ch, std::move(on_msg), std::move(on_closed));
                   });
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
