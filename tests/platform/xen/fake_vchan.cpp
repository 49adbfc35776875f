// In-memory libxenvchan (see fakes.hpp).
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>

#include "fakes.hpp"

extern "C" {
#include <libxenvchan.h>
}

namespace {

struct Pipe {
  std::deque<char> bytes;
};

struct End {
  libxenvchan pub{};  // what the library's users see (blocking flag)
  std::shared_ptr<Pipe> in, out;
  int efd = -1;
  End* peer = nullptr;
  bool closed = false;
  bool server = false;
  std::string path;
};

fake::Vchan g_v;
std::map<std::string, End*> g_servers;  // by path, until closed
std::map<libxenvchan*, End*> g_ends;

End* end_of(libxenvchan* v) { return g_ends.at(v); }
void kick(End* e) {
  if (e && e->efd >= 0) {
    uint64_t one = 1;
    (void)::write(e->efd, &one, sizeof(one));
  }
}

}  // namespace

namespace fake {
Vchan& vchan() { return g_v; }
void vchan_reset() {
  g_v = Vchan{};
  g_servers.clear();
  g_ends.clear();
}
libxenvchan* vchan_server_at(const std::string& path) {
  auto it = g_servers.find(path);
  return it == g_servers.end() ? nullptr : &it->second->pub;
}
}  // namespace fake


extern "C" {

libxenvchan* libxenvchan_server_init(xentoollog_logger*, int, const char* xs_path, size_t, size_t) {
  if (g_v.server_errno) {
    errno = g_v.server_errno;
    return nullptr;
  }
  auto* e = new End;
  e->server = true;
  e->path = xs_path;
  e->in = std::make_shared<Pipe>();
  e->out = std::make_shared<Pipe>();
  e->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  g_servers[xs_path] = e;
  g_ends[&e->pub] = e;
  ++g_v.servers;
  ++g_v.live;
  return &e->pub;
}

libxenvchan* libxenvchan_client_init(xentoollog_logger*, int, const char* xs_path) {
  auto it = g_servers.find(xs_path);
  if (g_v.client_errno || it == g_servers.end()) {
    errno = g_v.client_errno ? g_v.client_errno : ENOENT;
    return nullptr;
  }
  End* s = it->second;
  auto* e = new End;
  e->in = s->out;
  e->out = s->in;
  e->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  e->peer = s;
  s->peer = e;
  g_ends[&e->pub] = e;
  ++g_v.clients;
  ++g_v.live;
  kick(s);
  return &e->pub;
}

void libxenvchan_close(libxenvchan* v) {
  End* e = end_of(v);
  if (e->peer) {
    e->peer->closed = true;  // the other end sees is_open() == 0
    e->peer->peer = nullptr;
    kick(e->peer);
  }
  if (e->server) g_servers.erase(e->path);
  ::close(e->efd);
  g_ends.erase(v);
  ++g_v.closes;
  --g_v.live;
  delete e;
}

int libxenvchan_send(libxenvchan* v, const void* data, size_t size) {
  End* e = end_of(v);
  if (g_v.send_fails || e->closed) return -1;
  if (e->out->bytes.size() + size > g_v.ring_bytes) return 0;
  auto* p = static_cast<const char*>(data);
  e->out->bytes.insert(e->out->bytes.end(), p, p + size);
  kick(e->peer);
  return static_cast<int>(size);
}

int libxenvchan_recv(libxenvchan* v, void* data, size_t size) {
  End* e = end_of(v);
  if (e->in->bytes.size() < size) return e->closed ? -1 : 0;
  auto* p = static_cast<char*>(data);
  for (size_t i = 0; i < size; ++i) {
    p[i] = e->in->bytes.front();
    e->in->bytes.pop_front();
  }
  kick(e->peer);  // space freed
  return static_cast<int>(size);
}

int libxenvchan_wait(libxenvchan* v) {
  uint64_t n;
  (void)::read(end_of(v)->efd, &n, sizeof(n));
  return 0;
}

int libxenvchan_fd_for_select(libxenvchan* v) { return end_of(v)->efd; }
int libxenvchan_is_open(libxenvchan* v) {
  End* e = end_of(v);
  if (e->closed) return 0;
  return e->peer ? 1 : 2;
}
int libxenvchan_data_ready(libxenvchan* v) { return static_cast<int>(end_of(v)->in->bytes.size()); }
int libxenvchan_buffer_space(libxenvchan* v) {
  End* e = end_of(v);
  return static_cast<int>(g_v.ring_bytes - e->out->bytes.size());
}

}  // extern "C"
