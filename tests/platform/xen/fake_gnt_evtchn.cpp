// In-memory libxenevtchn and libxengnttab (see fakes.hpp).
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <vector>

#include "fakes.hpp"

extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xen/grant_table.h>
}

namespace {

fake::Gnt g;

// ---- event channels
struct EvtHandle {
  int efd = -1;
  std::deque<evtchn_port_t> pending;
};
struct Port {
  EvtHandle* owner = nullptr;
  evtchn_port_t peer = 0;  // the bound port on the other side (0 = unbound)
};
std::map<evtchn_port_t, Port> ports;
evtchn_port_t next_port = 10;

// ---- grants
struct Grant {
  int memfd = -1;
  size_t page = 0;
};
std::map<uint32_t, Grant> grants;
uint32_t next_ref = 100;
struct Share {
  int memfd;
  std::vector<uint32_t> refs;
  size_t count;
};
std::map<void*, Share> shares;  // by owner's mapping
std::map<void*, size_t> peer_maps;
constexpr size_t kPage = 4096;

}  // namespace

namespace fake {
Gnt& gnt() { return g; }
void gnt_reset() {
  g = Gnt{};
  ports.clear();
  grants.clear();
  shares.clear();
  peer_maps.clear();
}
}  // namespace fake

struct xenevtchn_handle {
  EvtHandle h;
};

extern "C" {

xenevtchn_handle* xenevtchn_open(xentoollog_logger*, unsigned) {
  auto* x = new xenevtchn_handle;
  x->h.efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ++g.open_handles;
  return x;
}
int xenevtchn_close(xenevtchn_handle* x) {
  for (auto& [p, port] : ports)
    if (port.owner == &x->h) port.owner = nullptr;
  ::close(x->h.efd);
  delete x;
  --g.open_handles;
  return 0;
}
int xenevtchn_fd(xenevtchn_handle* x) { return x->h.efd; }
xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle* x, uint32_t) {
  evtchn_port_t p = next_port++;
  ports[p] = {&x->h, 0};
  return static_cast<xenevtchn_port_or_error_t>(p);
}
xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle* x, uint32_t, evtchn_port_t remote) {
  auto it = ports.find(remote);
  if (g.bind_errno || it == ports.end() || it->second.peer) {
    errno = g.bind_errno ? g.bind_errno : EINVAL;
    return -1;
  }
  evtchn_port_t p = next_port++;
  ports[p] = {&x->h, remote};
  ports[remote].peer = p;
  return static_cast<xenevtchn_port_or_error_t>(p);
}
int xenevtchn_unbind(xenevtchn_handle*, evtchn_port_t port) {
  ports.erase(port);
  return 0;
}
int xenevtchn_notify(xenevtchn_handle*, evtchn_port_t port) {
  auto it = ports.find(port);
  if (it == ports.end()) {
    errno = EINVAL;
    return -1;
  }
  ++g.notifies;
  auto peer = ports.find(it->second.peer);
  if (peer == ports.end() || !peer->second.owner) return 0;  // nobody bound: lost, as in Xen
  peer->second.owner->pending.push_back(peer->first);
  uint64_t one = 1;
  (void)::write(peer->second.owner->efd, &one, sizeof(one));
  return 0;
}
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle* x) {
  if (x->h.pending.empty()) {
    errno = EAGAIN;
    return -1;
  }
  evtchn_port_t p = x->h.pending.front();
  x->h.pending.pop_front();
  if (x->h.pending.empty()) {
    uint64_t n;
    (void)::read(x->h.efd, &n, sizeof(n));
  }
  return static_cast<xenevtchn_port_or_error_t>(p);
}
int xenevtchn_unmask(xenevtchn_handle*, evtchn_port_t) { return 0; }

// ---- gntshr / gnttab share one handle type

xengntshr_handle* xengntshr_open(xentoollog_logger*, unsigned) {
  ++g.open_handles;
  return reinterpret_cast<xengntshr_handle*>(new int(1));
}
int xengntshr_close(xengntshr_handle* h) {
  delete reinterpret_cast<int*>(h);
  --g.open_handles;
  return 0;
}
void* xengntshr_share_pages(xengntshr_handle*, uint32_t, int count, uint32_t* refs, int) {
  if (g.share_errno) {
    errno = g.share_errno;
    return nullptr;
  }
  int fd = ::memfd_create("fake-grant", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(count * kPage)) != 0) return nullptr;
  void* p = ::mmap(nullptr, count * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return nullptr;
  Share s{fd, {}, static_cast<size_t>(count)};
  for (int i = 0; i < count; ++i) {
    refs[i] = next_ref++;
    grants[refs[i]] = {fd, static_cast<size_t>(i)};
    s.refs.push_back(refs[i]);
  }
  shares[p] = s;
  g.shared_pages += count;
  return p;
}
int xengntshr_unshare(xengntshr_handle*, void* addr, uint32_t count) {
  auto it = shares.find(addr);
  if (it == shares.end()) return -1;
  for (auto r : it->second.refs) grants.erase(r);
  ::munmap(addr, count * kPage);
  ::close(it->second.memfd);
  shares.erase(it);
  g.shared_pages -= static_cast<int>(count);
  return 0;
}

xengnttab_handle* xengnttab_open(xentoollog_logger*, unsigned) {
  ++g.open_handles;
  return reinterpret_cast<xengnttab_handle*>(new int(2));
}
int xengnttab_close(xengnttab_handle* h) {
  delete reinterpret_cast<int*>(h);
  --g.open_handles;
  return 0;
}
int xengnttab_set_max_grants(xengnttab_handle*, uint32_t) { return 0; }
void* xengnttab_map_domain_grant_refs(xengnttab_handle*, uint32_t count, uint32_t, uint32_t* refs, int prot) {
  if (g.map_errno) {
    errno = g.map_errno;
    return nullptr;
  }
  for (uint32_t i = 0; i < count; ++i)
    if (!grants.count(refs[i])) {
      errno = EINVAL;
      return nullptr;
    }
  // One contiguous area, each page mapped from its owner's memfd.
  void* area = ::mmap(nullptr, count * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return nullptr;
  for (uint32_t i = 0; i < count; ++i) {
    const Grant& gr = grants[refs[i]];
    void* at = static_cast<char*>(area) + i * kPage;
    if (::mmap(at, kPage, prot, MAP_SHARED | MAP_FIXED, gr.memfd, static_cast<off_t>(gr.page * kPage)) == MAP_FAILED)
      return nullptr;
  }
  peer_maps[area] = count;
  g.mapped_pages += static_cast<int>(count);
  return area;
}
void* xengnttab_map_grant_ref(xengnttab_handle* h, uint32_t domid, uint32_t ref, int prot) {
  return xengnttab_map_domain_grant_refs(h, 1, domid, &ref, prot);
}
int xengnttab_unmap(xengnttab_handle*, void* addr, uint32_t count) {
  peer_maps.erase(addr);
  ::munmap(addr, count * kPage);
  g.mapped_pages -= static_cast<int>(count);
  return 0;
}

// Copies through the owner's memfd, one segment at a time, as gntdev's
// IOCTL_GNTDEV_GRANT_COPY: a ref nobody granted gets GNTST_bad_gntref.
int xengnttab_grant_copy(xengnttab_handle*, uint32_t count, xengnttab_grant_copy_segment_t* segs) {
  for (uint32_t i = 0; i < count; ++i) {
    auto& s = segs[i];
    bool from = s.flags & GNTCOPY_source_gref;
    const auto& f = from ? s.source.foreign : s.dest.foreign;
    auto it = grants.find(f.ref);
    if (it == grants.end() || f.offset + size_t{s.len} > kPage) {
      s.status = GNTST_bad_gntref;
      continue;
    }
    off_t at = static_cast<off_t>(it->second.page * kPage + f.offset);
    ssize_t n = from ? ::pread(it->second.memfd, s.dest.virt, s.len, at) : ::pwrite(it->second.memfd, s.source.virt, s.len, at);
    s.status = n == s.len ? GNTST_okay : GNTST_general_error;
    ++g.copies;
  }
  return 0;
}

}  // extern "C"
