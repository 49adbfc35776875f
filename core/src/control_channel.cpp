#include "sd/core/control_channel.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

namespace sd::ctl {

void Msg::set_text(std::string_view s) {
  size_t n = std::min(s.size(), sizeof(text) - 1);
  std::memcpy(text, s.data(), n);
  text[n] = '\0';
}

std::string Msg::get_text() const {
  return std::string(text, strnlen(text, sizeof(text)));
}

Result<size_t> granted_pages(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return sys_fail("fstat granted pages");
  if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size % 4096 != 0)
    return fail(Code::kInvalidInput, "granted pages: not a file of whole pages (" + std::to_string(st.st_size) +
                                         " bytes)");
  return static_cast<size_t>(st.st_size / 4096);
}

Result<std::pair<Channel, Channel>> Channel::pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return sys_fail("socketpair");
  return std::pair<Channel, Channel>{Channel(UniqueFd(sv[0])), Channel(UniqueFd(sv[1]))};
}

Result<Channel> Channel::connect(const std::string& path, const std::string& what) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(a.sun_path))
    return fail(Code::kInvalidInput, what + " socket path '" + path + "' is empty or too long");
  std::memcpy(a.sun_path, path.c_str(), path.size());
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) return sys_fail("socket");
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    return sys_fail("connect to shadowd's " + what + " socket " + path);
  return Channel(std::move(s));
}

Result<void> Channel::set_nonblocking(bool on) {
  int fl = ::fcntl(fd_.get(), F_GETFL);
  if (fl < 0) return sys_fail("fcntl(F_GETFL)");
  fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (::fcntl(fd_.get(), F_SETFL, fl) != 0) return sys_fail("fcntl(F_SETFL)");
  return {};
}

Result<void> Channel::send(const Msg& m, int attach_fd) {
  return attach_fd >= 0 ? send_fds(m, &attach_fd, 1) : send_fds(m, nullptr, 0);
}

Result<void> Channel::send_fds(const Msg& m, const int* fds, size_t nfds) {
  if (nfds > kMaxFds) return fail(Code::kEscalate, "too many fds in one control message");
  iovec iov{const_cast<Msg*>(&m), sizeof(m)};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (nfds > 0) {
    mh.msg_control = cbuf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  for (;;) {
    ssize_t n = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof(m))) return {};
    if (n >= 0) return fail(Code::kSystem, "sendmsg: short write");
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return fail(Code::kRetry, "control channel full");
    return sys_fail("sendmsg");
  }
}

Result<std::optional<Msg>> Channel::recv(UniqueFd* fd_out) {
  std::vector<UniqueFd> fds;
  auto m = recv_fds(&fds);
  if (m && *m && fd_out && !fds.empty()) *fd_out = std::move(fds.front());
  return m;
}

Result<std::optional<Msg>> Channel::recv_fds(std::vector<UniqueFd>* fds_out) {
  Msg m;
  iovec iov{&m, sizeof(m)};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  // Room for kMaxFds; a peer sending more gets MSG_CTRUNC (the kernel closes the rest).
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof(cbuf);
  ssize_t n;
  do {
    n = ::recvmsg(fd_.get(), &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return std::optional<Msg>{};
    return sys_fail("recvmsg");
  }
  // Take ownership of every fd received before judging the message, so none leak.
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.emplace_back(fd);
    }
  }
  if (n == 0) return fail(Code::kSystem, "peer closed the control channel");
  if (n == static_cast<ssize_t>(sizeof(m)) && (mh.msg_flags & MSG_CTRUNC))
    return fail(Code::kRestartReplay, "control message's fds truncated (" + std::to_string(fds.size()) +
                                          " received; the receiver's fd limit?)");
  if (n != static_cast<ssize_t>(sizeof(m)) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
    return fail(Code::kRestartReplay, "malformed control message (size " + std::to_string(n) + ")");
  if (fds_out) *fds_out = std::move(fds);
  return std::optional<Msg>{m};
}

}  // namespace sd::ctl
