#include "control_client.hpp"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sd::tools {

using nlohmann::json;

Conn::~Conn() {
  if (fd_ >= 0) ::close(fd_);
}

bool Conn::open(const std::string& path) {
  if (fd_ >= 0) ::close(fd_);
  buf_.clear();
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (fd_ < 0 || path.size() >= sizeof(a.sun_path)) return false;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

bool Conn::send(const json& j) {
  std::string s = j.dump() + "\n";
  for (size_t off = 0; off < s.size();) {
    ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool Conn::fill() {
  char tmp[8192];
  for (;;) {
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof(tmp)) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;  // EOF or error
  }
}

std::optional<json> Conn::take() {
  auto nl = buf_.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  std::string line = buf_.substr(0, nl);
  buf_.erase(0, nl + 1);
  return json::parse(line, nullptr, false);
}

std::optional<json> Conn::recv() {
  for (;;) {
    if (auto j = take()) return j->is_discarded() ? std::nullopt : j;
    char tmp[4096];
    ssize_t n = ::read(fd_, tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

std::expected<json, RequestError> request(const std::string& sock, const json& req, Conn* conn, int timeout_s) {
  Conn local;
  Conn& c = conn ? *conn : local;
  if (!c.open(sock))
    return std::unexpected(
        RequestError{RequestError::kUnreachable, "cannot reach shadowd at " + sock + ": " + std::strerror(errno)});
  if (timeout_s > 0) {
    timeval tv{timeout_s, 0};
    ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  if (!c.send(req)) return std::unexpected(RequestError{RequestError::kLost, "lost connection to shadowd"});
  auto rep = c.recv();
  if (!rep) return std::unexpected(RequestError{RequestError::kNoAnswer, "no answer from shadowd"});
  if (!rep->contains("ok") || !(*rep)["ok"].is_boolean() || !(*rep)["ok"].get<bool>())
    return std::unexpected(RequestError{RequestError::kRefused, rep->value("error", std::string("request failed"))});
  return std::move(*rep);
}

}  // namespace sd::tools
