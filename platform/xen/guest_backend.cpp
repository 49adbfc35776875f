#include "sd/platform/xen/guest_backend.hpp"

#include <poll.h>
#include <sys/mman.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "sd/platform/xen/evtchn.hpp"

extern "C" {
#include <xengnttab.h>
#include <xenstore.h>
#include <xen/grant_table.h>
#include <xen/io/xenbus.h>
}

namespace sd::xen {

// ---- grant copy ------------------------------------------------------------

Result<std::unique_ptr<GrantCopier>> GrantCopier::open(uint32_t guest) {
  std::unique_ptr<GrantCopier> c(new GrantCopier());
  c->h_ = xengnttab_open(nullptr, 0);
  if (!c->h_)
    return fail(Code::kUnavailable,
                std::string("xen: xengnttab_open: ") + std::strerror(errno) + " (is xen-gntdev loaded?)");
  c->guest_ = guest;
  return c;
}

GrantCopier::~GrantCopier() {
  if (h_) xengnttab_close(h_);
}

void GrantCopier::copy(GrantCopy* ops, size_t n) {
  xengnttab_grant_copy_segment_t segs[kMaxBatch];
  for (size_t done = 0; done < n;) {
    size_t k = 0;
    size_t idx[kMaxBatch];
    for (; done < n && k < kMaxBatch; ++done) {
      GrantCopy& o = ops[done];
      o.ok = false;
      if (o.offset + size_t{o.len} > 4096) continue;  // never sent: the range is not the page's
      auto& seg = segs[k];
      seg = {};
      xengnttab_grant_copy_segment_t::xengnttab_copy_ptr foreign{};
      foreign.foreign = {o.ref, o.offset, static_cast<uint16_t>(guest_)};
      if (o.to_guest) {
        seg.source.virt = o.local;
        seg.dest = foreign;
        seg.flags = GNTCOPY_dest_gref;
      } else {
        seg.source = foreign;
        seg.dest.virt = o.local;
        seg.flags = GNTCOPY_source_gref;
      }
      seg.len = o.len;
      idx[k++] = done;
    }
    if (k == 0) continue;
    if (xengnttab_grant_copy(h_, static_cast<uint32_t>(k), segs) != 0) continue;  // none done
    for (size_t i = 0; i < k; ++i) ops[idx[i]].ok = segs[i].status == GNTST_okay;
  }
}

Result<void> GrantCopier::copy_from(uint32_t ref, uint16_t offset, void* dst, uint16_t len) {
  GrantCopy op{ref, offset, len, static_cast<uint8_t*>(dst), false, false};
  copy(&op, 1);
  if (!op.ok)
    return fail(Code::kInvalidInput, "xen: domain " + std::to_string(guest_) + "'s grant " + std::to_string(ref) +
                                         " refused a copy");
  return {};
}

Result<void> GrantCopier::copy_to(uint32_t ref, uint16_t offset, const void* src, uint16_t len) {
  GrantCopy op{ref, offset, len, static_cast<uint8_t*>(const_cast<void*>(src)), true, false};
  copy(&op, 1);
  if (!op.ok)
    return fail(Code::kInvalidInput, "xen: domain " + std::to_string(guest_) + "'s grant " + std::to_string(ref) +
                                         " refused a copy");
  return {};
}

// ---- handshake -------------------------------------------------------------

namespace {

struct Xs {
  xs_handle* h = nullptr;
  ~Xs() {
    if (h) xs_close(h);
  }
  std::optional<std::string> read(const std::string& path) const {
    unsigned len = 0;
    void* v = xs_read(h, XBT_NULL, path.c_str(), &len);
    if (!v) return std::nullopt;
    std::string s(static_cast<char*>(v), len);
    std::free(v);
    return s;
  }
  bool write(const std::string& path, const std::string& v) const {
    return xs_write(h, XBT_NULL, path.c_str(), v.data(), static_cast<unsigned>(v.size()));
  }
};

// A decimal number the guest wrote, whole and in range, or nullopt.
std::optional<uint32_t> parse_u32(const std::optional<std::string>& s) {
  if (!s || s->empty() || s->size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : *s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}

struct Mappings {
  xengntdev_handle* h = nullptr;
  std::vector<uint8_t*> pages;
  ~Mappings() {
    for (auto* p : pages) (void)xengnttab_unmap(h, p, 1);
    if (h) xengnttab_close(h);
  }
};

}  // namespace

Result<GuestFrontend> connect_guest_frontend(const std::string& back_dir,
                                             const std::map<std::string, std::string>& features,
                                             const std::vector<std::string>& ring_keys,
                                             const std::vector<std::string>& optional_keys, int timeout_ms,
                                             const std::vector<std::string>& event_keys) {
  Xs xs;
  xs.h = xs_open(0);
  if (!xs.h) return fail(Code::kUnavailable, std::string("xenstore: xs_open: ") + std::strerror(errno));
  auto front = xs.read(back_dir + "/frontend");
  auto domid = parse_u32(xs.read(back_dir + "/frontend-id"));
  if (!front || !domid || *domid == 0 || *domid >= 0x7ff0)
    return fail(Code::kInvalidInput, "xen: " + back_dir + " names no frontend (is the device laid out?)");
  // Written once per handshake: a try that timed out leaves InitWait as it
  // is, since every write of the state fires the frontend's watch, and
  // snd-xen-front starts its handshake over (new rings and ports) at each
  // InitWait it sees.
  auto state = parse_u32(xs.read(back_dir + "/state"));
  if (!state || *state != XenbusStateInitWait) {
    for (const auto& [k, v] : features)
      if (!xs.write(back_dir + "/" + k, v)) return fail(Code::kSystem, "xenstore: cannot write " + back_dir + "/" + k);
    if (!xs.write(back_dir + "/state", std::to_string(XenbusStateInitWait)))
      return fail(Code::kSystem, "xenstore: cannot write " + back_dir + "/state");
  }

  // Wait for the frontend's rings. Polled (every 20 ms), not watched: this
  // runs once per device, and a static program's libxenstore would need its
  // watch reader thread for a watch.
  std::string state_path = *front + "/state";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto st = parse_u32(xs.read(state_path));
    if (st && (*st == XenbusStateInitialised || *st == XenbusStateConnected)) break;
    if (std::chrono::steady_clock::now() >= deadline)
      return fail(Code::kUnavailable, "xen: the frontend at " + *front + " did not publish its rings within " +
                                          std::to_string(timeout_ms) + " ms (state " +
                                          (st ? std::to_string(*st) : std::string("absent")) + ")");
    ::poll(nullptr, 0, 20);
  }

  GuestFrontend g;
  g.domid = *domid;
  auto maps = std::make_shared<Mappings>();
  maps->h = xengnttab_open(nullptr, 0);
  if (!maps->h)
    return fail(Code::kUnavailable,
                std::string("xen: xengnttab_open: ") + std::strerror(errno) + " (is xen-gntdev loaded?)");
  for (const auto& key : ring_keys) {
    auto ref = parse_u32(xs.read(*front + "/" + key));
    if (!ref) return fail(Code::kInvalidInput, "xen: the frontend's " + key + " is missing or not a number");
    void* page = xengnttab_map_grant_ref(maps->h, *domid, *ref, PROT_READ | PROT_WRITE);
    if (!page)
      return fail(Code::kInvalidInput, "xen: cannot map the frontend's " + key + " (ref " + std::to_string(*ref) +
                                           " of domain " + std::to_string(*domid) + "): " + std::strerror(errno));
    maps->pages.push_back(static_cast<uint8_t*>(page));
  }
  for (const auto& key : event_keys) {
    auto port = parse_u32(xs.read(*front + "/" + key));
    if (!port) return fail(Code::kInvalidInput, "xen: the frontend's " + key + " is missing or not a number");
    auto evt = XenEventChannel::bind(*domid, *port);
    if (!evt) return std::unexpected(evt.error());
    g.evts.push_back(std::move(*evt));
  }
  auto grants = GrantCopier::open(*domid);
  if (!grants) return std::unexpected(grants.error());
  for (const auto& key : optional_keys)
    if (auto v = xs.read(*front + "/" + key)) g.keys[key] = *v;
  if (!xs.write(back_dir + "/state", std::to_string(XenbusStateConnected)))
    return fail(Code::kSystem, "xenstore: cannot write " + back_dir + "/state");
  g.rings = maps->pages;
  g.grants = std::move(*grants);
  g.keep = std::move(maps);
  return g;
}

bool guest_frontend_left(const std::string& back_dir) {
  Xs xs;
  xs.h = xs_open(0);
  if (!xs.h) return false;  // no answer is no news: keep serving
  // Only an answer counts: a node that is not there (ENOENT) is gone, a
  // read that failed otherwise is no news, and neither is a state the guest
  // garbled (its ring is checked on its own).
  auto front = xs.read(back_dir + "/frontend");
  if (!front) return errno == ENOENT;
  auto text = xs.read(*front + "/state");
  if (!text) return errno == ENOENT;
  auto st = parse_u32(text);
  return st && (*st == XenbusStateClosing || *st == XenbusStateClosed || *st == XenbusStateInitialising ||
                *st == XenbusStateUnknown);
}

void close_guest_backend(const std::string& back_dir) {
  Xs xs;
  xs.h = xs_open(0);
  if (xs.h) (void)xs.write(back_dir + "/state", std::to_string(XenbusStateClosed));
}

}  // namespace sd::xen
