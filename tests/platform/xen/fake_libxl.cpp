// Fake libxl (and the two xentoollog calls): see fakes.hpp.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>

extern "C" {
#include <libxl.h>
#include <libxl_event.h>
#include <libxl_utils.h>
#include <xentoollog.h>
}

#include "fakes.hpp"

// The opaque types libxl.h only declares.
struct libxl__ctx {
  const libxl_osevent_hooks* os_hooks = nullptr;
  void* os_user = nullptr;
  const libxl_event_hooks* ev_hooks = nullptr;
  void* ev_user = nullptr;
  int efd = -1;                 // "libxl's xenstore fd", registered through os_hooks
  void* efd_reg = nullptr;      // the application's registration for it
  void* timeout_reg = nullptr;  // the application's registration of our timeout
};
struct libxl__evgen_domain_death {
  uint32_t domid;
  libxl_ev_user user;
};
struct xentoollog_logger_stdiostream {
  xentoollog_logger base;
};

namespace fake {

namespace {

struct PendingEvent {
  libxl_event_type type;
  uint32_t domid;
  int reason;
};

struct HeldCreate {
  libxl_asyncop_how how;
  const libxl_domain_config* cfg;  // valid until the callback (libxl's rule)
  uint32_t* out;
  uint32_t domid;
};

struct Hidden {
  libxl_ctx* ctx = nullptr;  // the one live ctx
  std::map<libxl_evgen_domain_death*, bool> evgens;
  std::deque<PendingEvent> pending;
  int fd_token = 0;       // &fd_token is libxl's for_libxl of the fd
  int timeout_token = 0;  // ... of the timeout
  std::vector<HeldCreate> held_creates;  // asynchronous creates not finished yet
  struct HeldDestroy {
    libxl_asyncop_how how;
    uint32_t domid;
  };
  std::vector<HeldDestroy> held;  // asynchronous destroys not finished yet
};

Libxl g_state;
Hidden g_hidden;

void signal_fd() {
  if (!g_hidden.ctx || g_hidden.ctx->efd < 0) return;
  uint64_t one = 1;
  (void)!::write(g_hidden.ctx->efd, &one, sizeof one);
}

void queue(PendingEvent ev) {
  g_hidden.pending.push_back(ev);
  signal_fd();
}

}  // namespace

Libxl& libxl() { return g_state; }

void libxl_reset() {
  for (auto& [evgen, _] : g_hidden.evgens) delete evgen;
  g_hidden = Hidden{};
  g_state = Libxl{};
}

void libxl_deliver_death(uint32_t domid) {
  g_state.domains.erase(domid);
  queue({LIBXL_EVENT_TYPE_DOMAIN_DEATH, domid, 0});
}

void libxl_deliver_shutdown(uint32_t domid, int reason) {
  queue({LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN, domid, reason});
}

void libxl_vanish(uint32_t domid) { g_state.domains.erase(domid); }

namespace {
// An asynchronous destroy finishes: the domain dies unless async_destroy_rc
// says the destroy failed; then the application's callback runs.
void finish_destroy(const libxl_asyncop_how& how, uint32_t domid) {
  int rc = g_state.async_destroy_rc;
  if (rc == 0 && g_state.domains.count(domid)) libxl_deliver_death(domid);
  --g_state.destroys_in_flight;
  how.callback(g_hidden.ctx, rc, how.u.for_callback);
}
}  // namespace

void libxl_finish_when_driven() {
  g_state.finish_held_when_driven = true;
  signal_fd();
}

void libxl_finish_destroys() {
  auto held = std::move(g_hidden.held);
  g_hidden.held.clear();
  for (auto& h : held) finish_destroy(h.how, h.domid);
}

void libxl_disaster(const char* msg) {
  libxl_ctx* ctx = g_hidden.ctx;
  if (ctx && ctx->ev_hooks && ctx->ev_hooks->disaster)
    ctx->ev_hooks->disaster(ctx->ev_user, LIBXL_EVENT_TYPE_DOMAIN_DEATH, msg, EIO);
}

void libxl_make_fd_readable() { signal_fd(); }

void libxl_modify_fd(short events) {
  libxl_ctx* ctx = g_hidden.ctx;
  ctx->os_hooks->fd_modify(ctx->os_user, ctx->efd, &ctx->efd_reg, events);
}

void libxl_deregister_fd() {
  libxl_ctx* ctx = g_hidden.ctx;
  ctx->os_hooks->fd_deregister(ctx->os_user, ctx->efd, ctx->efd_reg);
  ctx->efd_reg = nullptr;
  ++g_state.fd_deregistrations;
}

void libxl_register_timeout(int ms_from_now) {
  libxl_ctx* ctx = g_hidden.ctx;
  timeval now{};
  ::gettimeofday(&now, nullptr);
  int64_t us = int64_t(now.tv_usec) + int64_t(ms_from_now) * 1000;
  timeval abs{now.tv_sec + us / 1000000, us % 1000000};
  ctx->os_hooks->timeout_register(ctx->os_user, &ctx->timeout_reg, abs, &g_hidden.timeout_token);
}

void libxl_timeout_now() {
  libxl_ctx* ctx = g_hidden.ctx;
  ctx->os_hooks->timeout_modify(ctx->os_user, &ctx->timeout_reg, timeval{0, 0});
}

}  // namespace fake

using fake::g_hidden;
using fake::g_state;

extern "C" {

// ---- xentoollog ------------------------------------------------------------

xentoollog_logger_stdiostream* xtl_createlogger_stdiostream(FILE*, xentoollog_level, unsigned) {
  ++g_state.loggers;
  return new xentoollog_logger_stdiostream{};
}

void xtl_logger_destroy(struct xentoollog_logger* logger) {
  if (!logger) return;
  --g_state.loggers;
  delete reinterpret_cast<xentoollog_logger_stdiostream*>(logger);
}

// ---- context -----------------------------------------------------------------

int libxl_ctx_alloc(libxl_ctx** pctx, int, unsigned, xentoollog_logger*) {
  *pctx = nullptr;
  if (g_state.ctx_alloc_rc) return g_state.ctx_alloc_rc;
  *pctx = g_hidden.ctx = new libxl_ctx{};
  ++g_state.ctx_allocs;
  return 0;
}

int libxl_ctx_free(libxl_ctx* ctx) {
  if (!ctx) return 0;
  if (ctx->efd >= 0) {
    if (ctx->efd_reg) {
      ctx->os_hooks->fd_deregister(ctx->os_user, ctx->efd, ctx->efd_reg);
      ++g_state.fd_deregistrations;
    }
    ::close(ctx->efd);
  }
  if (g_hidden.ctx == ctx) g_hidden.ctx = nullptr;
  delete ctx;
  ++g_state.ctx_frees;
  return 0;
}

// Like libxl: registering the hooks registers its (here: only) fd at once.
void libxl_osevent_register_hooks(libxl_ctx* ctx, const libxl_osevent_hooks* hooks, void* user) {
  ctx->os_hooks = hooks;
  ctx->os_user = user;
  ctx->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (hooks->fd_register(user, ctx->efd, &ctx->efd_reg, POLLIN, &g_hidden.fd_token) == 0)
    ++g_state.fd_registrations;
  else
    ctx->efd_reg = nullptr;
}

void libxl_event_register_callbacks(libxl_ctx* ctx, const libxl_event_hooks* hooks, void* user) {
  ctx->ev_hooks = hooks;
  ctx->ev_user = user;
}

void libxl_childproc_setmode(libxl_ctx*, const libxl_childproc_hooks* hooks, void*) {
  g_state.childproc_mode = hooks ? static_cast<int>(hooks->chldowner) : -1;
}

// The fd is readable: consume it and deliver every queued event to the
// death watches that match it, through event_occurs.
void libxl_osevent_occurred_fd(libxl_ctx* ctx, void* for_libxl, int, short, short revents) {
  if (for_libxl != &g_hidden.fd_token) {
    ++g_state.occurred_fd_bogus;
    return;
  }
  ++g_state.occurred_fd;
  g_state.last_revents = revents;
  uint64_t n;
  (void)!::read(ctx->efd, &n, sizeof n);
  if (g_state.finish_held_when_driven) {
    fake::libxl_finish_destroys();
    fake::libxl_finish_creates();
  }
  std::deque<fake::PendingEvent> pending;
  pending.swap(g_hidden.pending);
  for (const auto& p : pending) {
    for (auto& [evgen, _] : g_hidden.evgens) {
      if (evgen->domid != p.domid || !ctx->ev_hooks) continue;
      auto* ev = static_cast<libxl_event*>(std::calloc(1, sizeof(libxl_event)));
      ev->domid = p.domid;
      ev->type = p.type;
      ev->for_user = evgen->user;
      ev->u.domain_shutdown.shutdown_reason = static_cast<uint8_t>(p.reason);
      ctx->ev_hooks->event_occurs(ctx->ev_user, ev);
    }
  }
}

void libxl_osevent_occurred_timeout(libxl_ctx*, void* for_libxl) {
  if (for_libxl == &g_hidden.timeout_token) ++g_state.occurred_timeout;
}

void libxl_event_free(libxl_ctx*, libxl_event* event) {
  ++g_state.events_freed;
  std::free(event);
}

// ---- configuration -----------------------------------------------------------

void libxl_domain_config_init(libxl_domain_config* d) {
  std::memset(d, 0, sizeof *d);
  d->c_info.type = LIBXL_DOMAIN_TYPE_INVALID;
  d->b_info.type = LIBXL_DOMAIN_TYPE_INVALID;
  d->b_info.max_memkb = d->b_info.target_memkb = LIBXL_MEMKB_DEFAULT;
}

void libxl_domain_build_info_init_type(libxl_domain_build_info* b, libxl_domain_type type) { b->type = type; }

void libxl_device_nic_init(libxl_device_nic* n) { std::memset(n, 0, sizeof *n); }
void libxl_device_disk_init(libxl_device_disk* d) { std::memset(d, 0, sizeof *d); }

void libxl_domain_config_dispose(libxl_domain_config* d) {
  for (int i = 0; i < d->num_nics; ++i) {
    std::free(d->nics[i].bridge);
    std::free(d->nics[i].script);
  }
  std::free(d->nics);
  for (int i = 0; i < d->num_disks; ++i) {
    std::free(d->disks[i].pdev_path);
    std::free(d->disks[i].vdev);
    std::free(d->disks[i].script);
  }
  std::free(d->disks);
  std::free(d->c_info.name);
  std::free(d->b_info.kernel);
  std::free(d->b_info.ramdisk);
  std::free(d->b_info.cmdline);
  std::free(d->b_info.avail_vcpus.map);
  std::memset(d, 0, sizeof *d);
  ++g_state.config_disposes;
}

void libxl_defbool_set(libxl_defbool* db, bool b) { db->val = b ? 1 : -1; }

int libxl_bitmap_alloc(libxl_ctx*, libxl_bitmap* bitmap, int n_bits) {
  bitmap->size = static_cast<uint32_t>((n_bits + 7) / 8);
  bitmap->map = static_cast<uint8_t*>(std::calloc(bitmap->size, 1));
  return 0;
}

void libxl_bitmap_set(libxl_bitmap* bitmap, int bit) {
  if (bit >= 0 && static_cast<uint32_t>(bit / 8) < bitmap->size) bitmap->map[bit / 8] |= uint8_t(1u << (bit % 8));
}

// ---- domains -----------------------------------------------------------------

}  // extern "C"

namespace fake {
namespace {
// The build libxl does (synchronously, or for an asynchronous create when it
// completes): the domain exists, paused.
int build(const libxl_domain_config* d, uint32_t domid) {
  if (g_state.domains.count(domid)) return ERROR_FAIL;  // Xen: the domid is taken
  CreatedDomain c;
  c.domid = domid;
  c.name = d->c_info.name ? d->c_info.name : "";
  c.c_type = d->c_info.type;
  c.b_type = d->b_info.type;
  c.driver_domain = d->c_info.driver_domain.val;
  c.max_memkb = d->b_info.max_memkb;
  c.target_memkb = d->b_info.target_memkb;
  c.max_vcpus = d->b_info.max_vcpus;
  for (int i = 0; i < d->num_nics; ++i) {
    const libxl_device_nic& n = d->nics[i];
    CreatedDomain::Nic nic{n.bridge ? n.bridge : "", n.script ? n.script : "", {}, static_cast<int>(n.backend_domid)};
    std::memcpy(nic.mac, n.mac, 6);
    c.nics.push_back(nic);
  }
  for (int i = 0; i < d->num_disks; ++i) {
    const libxl_device_disk& k = d->disks[i];
    c.disks.push_back({k.pdev_path ? k.pdev_path : "", k.vdev ? k.vdev : "", k.script ? k.script : "",
                       static_cast<int>(k.format), k.readwrite, static_cast<int>(k.backend_domid)});
  }
  for (uint32_t i = 0; i < d->b_info.avail_vcpus.size; ++i)
    c.avail_vcpus += __builtin_popcount(d->b_info.avail_vcpus.map[i]);
  c.kernel = d->b_info.kernel ? d->b_info.kernel : "";
  c.ramdisk = d->b_info.ramdisk ? d->b_info.ramdisk : "";
  c.cmdline = d->b_info.cmdline ? d->b_info.cmdline : "";
  g_state.created.push_back(c);
  g_state.domains.insert(domid);
  return 0;
}

void finish_create(const HeldCreate& h) {
  int rc = g_state.async_create_rc ? g_state.async_create_rc : build(h.cfg, h.domid);
  if (rc == 0) *h.out = h.domid;
  --g_state.creates_in_flight;
  h.how.callback(g_hidden.ctx, rc, h.how.u.for_callback);
}
}  // namespace

void libxl_finish_creates() {
  auto held = std::move(g_hidden.held_creates);
  g_hidden.held_creates.clear();
  for (auto& h : held) finish_create(h);
}
}  // namespace fake

extern "C" {

// A domid in c_info is used as given (LIBXL_HAVE_CREATEINFO_DOMID), else the
// next free one. With ao_how the build completes inside the call, or on
// libxl_finish_creates when hold_creates is set.
int libxl_domain_create_new(libxl_ctx*, libxl_domain_config* d, uint32_t* domid, const libxl_asyncop_how* how,
                            const libxl_asyncprogress_how*) {
  if (g_state.create_rc) return g_state.create_rc;
  uint32_t want = d->c_info.domid;
  uint32_t id = (want > 0 && want < 0x7FF0) ? want : g_state.next_domid++;
  g_state.calls.push_back((how && how->callback ? "create-async " : "create ") + std::to_string(id));
  if (!(how && how->callback)) {
    int rc = fake::build(d, id);
    if (rc == 0) *domid = id;
    return rc;
  }
  ++g_state.creates_in_flight;
  fake::HeldCreate h{*how, d, domid, id};
  if (g_state.hold_creates)
    g_hidden.held_creates.push_back(h);
  else
    fake::finish_create(h);
  return 0;
}

int libxl_domain_unpause(libxl_ctx*, uint32_t domid, const libxl_asyncop_how*) {
  if (g_state.unpause_rc) return g_state.unpause_rc;
  g_state.unpaused.push_back(domid);
  return 0;
}

// As libxl does for a domid that does not exist: ERROR_INVAL. Destroying an
// existing domain fires its death watches (DOMAIN_DEATH).
int libxl_domain_pause(libxl_ctx*, uint32_t domid, const libxl_asyncop_how*) {
  if (g_state.pause_rc) return g_state.pause_rc;
  if (!g_state.domains.count(domid)) return ERROR_INVAL;
  g_state.paused.push_back(domid);
  g_state.calls.push_back("pause " + std::to_string(domid));
  return 0;
}

int libxl_domain_destroy(libxl_ctx*, uint32_t domid, const libxl_asyncop_how* how) {
  bool async = how && how->callback;
  g_state.destroyed.push_back(domid);
  g_state.calls.push_back((async ? "destroy-async " : "destroy ") + std::to_string(domid));
  if (g_state.destroy_rc) return g_state.destroy_rc;
  if (!g_state.domains.count(domid)) return ERROR_INVAL;
  if (async) {
    ++g_state.destroys_in_flight;
    if (g_state.hold_destroys)
      g_hidden.held.push_back({*how, domid});
    else
      fake::finish_destroy(*how, domid);  // libxl may complete inside the initiating call
    return 0;
  }
  fake::libxl_deliver_death(domid);
  return 0;
}

libxl_dominfo* libxl_list_domain(libxl_ctx*, int* n) {
  *n = static_cast<int>(g_state.domains.size());
  auto* list = static_cast<libxl_dominfo*>(std::calloc(g_state.domains.size() + 1, sizeof(libxl_dominfo)));
  int i = 0;
  for (uint32_t id : g_state.domains) list[i++].domid = id;
  return list;
}

void libxl_dominfo_list_free(libxl_dominfo* list, int) { std::free(list); }

int libxl_domain_info(libxl_ctx*, libxl_dominfo*, uint32_t domid) {
  return g_state.domains.count(domid) ? 0 : ERROR_DOMAIN_NOTFOUND;
}

int libxl_evenable_domain_death(libxl_ctx*, uint32_t domid, libxl_ev_user user, libxl_evgen_domain_death** out) {
  *out = nullptr;
  if (g_state.evenable_rc) return g_state.evenable_rc;
  *out = new libxl_evgen_domain_death{domid, user};
  g_hidden.evgens[*out] = true;
  ++g_state.death_watches;
  return 0;
}

void libxl_evdisable_domain_death(libxl_ctx*, libxl_evgen_domain_death* evgen) {
  if (g_hidden.evgens.erase(evgen)) {
    delete evgen;
    --g_state.death_watches;
  }
}

}  // extern "C"
