#include "xen/domain_manager.hpp"

#include <signal.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sd::xen {

using platform::DomId;

// Domain ids from here up are Xen's own (DOMID_FIRST_RESERVED in xen.h).
constexpr DomId kFirstReservedDomid = 0x7FF0;
// How long the destructor lets libxl finish its background builds/destroys.
constexpr auto kDrainLimit = std::chrono::seconds(30);

std::string libxl_error_name(int rc) {
#define SD_NAMED(e) {e, #e}
  static constexpr std::pair<int, const char*> kNames[] = {
      SD_NAMED(ERROR_NONSPECIFIC),      SD_NAMED(ERROR_VERSION),         SD_NAMED(ERROR_FAIL),
      SD_NAMED(ERROR_NI),               SD_NAMED(ERROR_NOMEM),           SD_NAMED(ERROR_INVAL),
      SD_NAMED(ERROR_BADFAIL),          SD_NAMED(ERROR_GUEST_TIMEDOUT),  SD_NAMED(ERROR_TIMEDOUT),
      SD_NAMED(ERROR_NOPARAVIRT),       SD_NAMED(ERROR_NOT_READY),       SD_NAMED(ERROR_OSEVENT_REG_FAIL),
      SD_NAMED(ERROR_LOCK_FAIL),        SD_NAMED(ERROR_DOMAIN_NOTFOUND), SD_NAMED(ERROR_ABORTED),
      SD_NAMED(ERROR_NOTFOUND),         SD_NAMED(ERROR_DOMAIN_DESTROYED)};
#undef SD_NAMED
  for (auto [code, name] : kNames)
    if (code == rc) return std::string(name) + " (" + std::to_string(rc) + ")";
  return "libxl error " + std::to_string(rc);
}

namespace {

Code code_for(int rc) {
  switch (rc) {
    case ERROR_INVAL: return Code::kInvalidInput;
    case ERROR_NOMEM:
    case ERROR_LOCK_FAIL:
    case ERROR_TIMEDOUT: return Code::kRetry;
    default: return Code::kSystem;
  }
}

std::unexpected<Error> libxl_fail(const std::string& what, const char* call, int rc) {
  return fail(code_for(rc), "xen: " + what + ": " + call + " returned " + libxl_error_name(rc) +
                                " (libxl's log on stderr says why)");
}

std::string domain_label(DomId id, const std::string& name) {
  return "domain " + std::to_string(id) + " ('" + name + "')";
}

std::string shutdown_reason(int reason) {
  switch (reason) {
    case LIBXL_SHUTDOWN_REASON_CRASH: return "crashed (domain crash)";
    case LIBXL_SHUTDOWN_REASON_WATCHDOG: return "hang (watchdog)";
    case LIBXL_SHUTDOWN_REASON_POWEROFF: return "shut down (poweroff)";
    case LIBXL_SHUTDOWN_REASON_REBOOT: return "shut down (reboot)";
    case LIBXL_SHUTDOWN_REASON_SUSPEND: return "shut down (suspend)";
    case LIBXL_SHUTDOWN_REASON_SOFT_RESET: return "shut down (soft reset)";
    default: return "shut down (reason " + std::to_string(reason) + ")";
  }
}

Result<libxl_domain_type> parse_type(const platform::DomainSpec& spec) {
  if (spec.type.empty() || spec.type == "pv") return LIBXL_DOMAIN_TYPE_PV;
  if (spec.type == "pvh") return LIBXL_DOMAIN_TYPE_PVH;
  if (spec.type == "hvm") return LIBXL_DOMAIN_TYPE_HVM;
  return fail(Code::kInvalidInput,
              "xen: domain '" + spec.name + "': unknown type '" + spec.type + "' (expected pv, pvh or hvm)");
}

Result<void> validate(const platform::DomainSpec& spec, libxl_domain_type type) {
  auto bad = [&](const std::string& why) {
    return fail(Code::kInvalidInput, "xen: domain '" + spec.name + "': " + why);
  };
  if (spec.name.empty()) return bad("no name");
  if (type != LIBXL_DOMAIN_TYPE_HVM && spec.kernel.empty())
    return bad("a " + (spec.type.empty() ? std::string("pv") : spec.type) + " domain needs kernel= in its cfg");
  if (spec.memory_mb && *spec.memory_mb < 1) return bad("memory must be at least 1 MiB");
  if (spec.vcpus && (*spec.vcpus < 1 || *spec.vcpus > 4096)) return bad("vcpus must be between 1 and 4096");
  return {};
}

char* c_string(const std::string& s) { return s.empty() ? nullptr : ::strdup(s.c_str()); }

// Fills a libxl_domain_config the way xl does for the keys a DomainSpec has.
// The caller disposes of it (libxl frees the strdup'ed strings).
Result<void> build_config(libxl_ctx* ctx, const platform::DomainSpec& spec, libxl_domain_type type,
                          const std::string& xen_name, libxl_domain_config* cfg) {
  libxl_domain_create_info& c = cfg->c_info;
  c.type = type;
  c.name = c_string(xen_name);
  libxl_defbool_set(&c.driver_domain, spec.driver_domain);

  libxl_domain_build_info& b = cfg->b_info;
  libxl_domain_build_info_init_type(&b, type);
  if (spec.memory_mb) b.max_memkb = b.target_memkb = static_cast<uint64_t>(*spec.memory_mb) * 1024;
  if (spec.vcpus) {
    int n = static_cast<int>(*spec.vcpus);
    b.max_vcpus = n;
    // All of them online, as xl does for vcpus=N.
    if (int rc = libxl_bitmap_alloc(ctx, &b.avail_vcpus, n); rc != 0)
      return libxl_fail("building domain '" + spec.name + "'", "libxl_bitmap_alloc", rc);
    for (int i = 0; i < n; ++i) libxl_bitmap_set(&b.avail_vcpus, i);
  }
  b.kernel = c_string(spec.kernel);
  b.ramdisk = c_string(spec.ramdisk);
  b.cmdline = c_string(spec.cmdline);

  // NICs served by dom0's netback; libxl runs their hotplug script
  // (default vif-bridge) as xl create does.
  if (!spec.nics.empty()) {
    cfg->nics = static_cast<libxl_device_nic*>(std::calloc(spec.nics.size(), sizeof(libxl_device_nic)));
    if (!cfg->nics) return fail(Code::kRetry, "xen: out of memory building domain '" + spec.name + "'");
    cfg->num_nics = static_cast<int>(spec.nics.size());
    for (size_t i = 0; i < spec.nics.size(); ++i) {
      libxl_device_nic& n = cfg->nics[i];
      libxl_device_nic_init(&n);
      n.devid = static_cast<libxl_devid>(i);
      n.backend_domid = 0;
      n.nictype = LIBXL_NIC_TYPE_VIF;
      const auto& kv = spec.nics[i];
      if (auto it = kv.find("bridge"); it != kv.end()) n.bridge = c_string(it->second);
      if (auto it = kv.find("script"); it != kv.end()) n.script = c_string(it->second);
      if (auto it = kv.find("mac"); it != kv.end()) {
        unsigned v[6];
        if (std::sscanf(it->second.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
          return fail(Code::kInvalidInput, "xen: domain '" + spec.name + "': bad vif mac '" + it->second + "'");
        for (int j = 0; j < 6; ++j) n.mac[j] = static_cast<uint8_t>(v[j]);
      }
    }
  }
  // Disks served by dom0's blkback; libxl picks the backend and runs the
  // hotplug script (default block) as xl create does.
  if (!spec.disks.empty()) {
    cfg->disks = static_cast<libxl_device_disk*>(std::calloc(spec.disks.size(), sizeof(libxl_device_disk)));
    if (!cfg->disks) return fail(Code::kRetry, "xen: out of memory building domain '" + spec.name + "'");
    cfg->num_disks = static_cast<int>(spec.disks.size());
    for (size_t i = 0; i < spec.disks.size(); ++i) {
      libxl_device_disk& d = cfg->disks[i];
      libxl_device_disk_init(&d);
      d.backend_domid = 0;
      const auto& kv = spec.disks[i];
      auto get = [&](const char* k) { auto it = kv.find(k); return it == kv.end() ? std::string() : it->second; };
      if (get("target").empty() || get("vdev").empty())
        return fail(Code::kInvalidInput, "xen: domain '" + spec.name + "': a disk without target or vdev");
      d.pdev_path = c_string(get("target"));
      d.vdev = c_string(get("vdev"));
      d.format = get("format") == "qcow2" ? LIBXL_DISK_FORMAT_QCOW2 : LIBXL_DISK_FORMAT_RAW;
      d.readwrite = (get("access") == "r" || get("access") == "ro") ? 0 : 1;
      d.is_cdrom = get("devtype") == "cdrom" ? 1 : 0;
      if (!get("script").empty()) d.script = c_string(get("script"));
    }
  }
  return {};
}

}  // namespace

const libxl_event_hooks XenDomainManager::kEventHooks = {
    (1UL << LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN) | (1UL << LIBXL_EVENT_TYPE_DOMAIN_DEATH),
    &XenDomainManager::event_occurs,
    &XenDomainManager::disaster,
};

// shadowd reaps its own children synchronously (waitpid on its pids); libxl
// must reap only its own (hotplug scripts, bootloader, device models).
const libxl_childproc_hooks XenDomainManager::kChildHooks = {
    libxl_sigchld_owner_libxl_always_selective_reap, nullptr, nullptr};

Result<std::unique_ptr<XenDomainManager>> XenDomainManager::open(boost::asio::io_context& io) {
  auto* log = reinterpret_cast<xentoollog_logger*>(xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0));
  if (!log) return fail(Code::kUnavailable, "xen: cannot create libxl's logger (out of memory)");
  std::unique_ptr<XenDomainManager> m(new XenDomainManager(io, log));
  int rc = libxl_ctx_alloc(&m->ctx_, LIBXL_VERSION, 0, log);
  if (rc != 0 || !m->ctx_) {
    m->ctx_ = nullptr;
    return fail(Code::kUnavailable,
                "xen: libxl_ctx_alloc returned " + libxl_error_name(rc) + " (is xenstored running? are we dom0?)");
  }
  m->osevents_->attach(m->ctx_);
  libxl_childproc_setmode(m->ctx_, &kChildHooks, nullptr);
  libxl_event_register_callbacks(m->ctx_, &kEventHooks, m.get());
  return m;
}

XenDomainManager::XenDomainManager(boost::asio::io_context& io, xentoollog_logger* log)
    : io_(io), log_(log), osevents_(std::make_unique<LibxlOsEvents>(io)) {}

XenDomainManager::~XenDomainManager() {
  if (ctx_) {
    for (auto& [id, inc] : live_) {
      if (inc.evgen) libxl_evdisable_domain_death(ctx_, inc.evgen);
      inc.evgen = nullptr;
      if (inc.building)
        inc.destroyed = true;  // on_built destroys it
      else if (!inc.destroyed)
        (void)destroy_in_background(id, inc.xen_name);
    }
    // libxl finishes what it started only while its events are driven, and
    // asserts when a context with operations in flight is freed: run the
    // (stopped) io_context a while longer for them.
    auto deadline = std::chrono::steady_clock::now() + kDrainLimit;
    while ((!destroying_.empty() || !building_.empty()) && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(50));
    }
    self_.reset();
    osevents_->detach();
    if (destroying_.empty() && building_.empty())
      libxl_ctx_free(ctx_);  // deregisters its fds through osevents_
    else
      std::fprintf(stderr,
                   "shadowd: xen: %zu domain build(s) and %zu destroy(s) still in flight after %lld s; left to "
                   "Xen (xl list), libxl context left open\n",
                   building_.size(), destroying_.size(),
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kDrainLimit).count()));
  }
  osevents_.reset();
  if (log_) xtl_logger_destroy(log_);
}

std::optional<std::string> XenDomainManager::xen_name(DomId id) const {
  auto it = live_.find(id);
  if (it == live_.end()) return std::nullopt;
  return it->second.xen_name;
}

std::string XenDomainManager::pick_xen_name(const std::string& name) const {
  for (const auto& [id, inc] : live_)
    if (!inc.destroyed && inc.xen_name == name) return name + "-" + std::to_string(next_serial_);
  for (const auto& [id, xen_name] : destroying_)  // still exists in Xen until libxl is done
    if (xen_name == name) return name + "-" + std::to_string(next_serial_);
  return name;
}

// ---- create ----------------------------------------------------------------

// The hypervisor would pick the domid only when libxl has built the domain;
// choosing it here lets create() return the incarnation at once while libxl
// builds it in the background (create_done), so shadowd's loop never waits
// for a domain to be built. Like Xen, count upwards past every domain that
// exists: libxl refuses a domid destroyed within the last minute ("domain id
// recently used"), and those lie below.
std::optional<DomId> XenDomainManager::pick_domid() {
  int n = 0;
  if (libxl_dominfo* list = libxl_list_domain(ctx_, &n)) {
    for (int i = 0; i < n; ++i)
      if (list[i].domid + 1 < kFirstReservedDomid) next_domid_ = std::max<DomId>(next_domid_, list[i].domid + 1);
    libxl_dominfo_list_free(list, n);
  }
  for (DomId tries = 1; tries < kFirstReservedDomid; ++tries) {
    DomId id = next_domid_;
    next_domid_ = next_domid_ + 1 >= kFirstReservedDomid ? 1 : next_domid_ + 1;
    if (live_.count(id) || destroying_.count(id)) continue;
    if (libxl_domain_info(ctx_, nullptr, id) == ERROR_DOMAIN_NOTFOUND) return id;
  }
  return std::nullopt;
}

Result<platform::DomainInfo> XenDomainManager::create(const platform::DomainSpec& spec, ctl::Channel* ctl) {
  if (!disaster_.empty())
    return fail(Code::kEscalate, "xen: libxl reported a disaster earlier (" + disaster_ + "); restart shadowd");
  auto type = parse_type(spec);
  if (!type) return std::unexpected(type.error());
  if (auto ok = validate(spec, *type); !ok) return std::unexpected(ok.error());
  std::string xen_name = pick_xen_name(spec.name);
  std::string what = "creating domain '" + xen_name + "'";
  auto domid = pick_domid();
  if (!domid) return fail(Code::kRetry, "xen: " + what + ": no free domain id");

  // libxl reads the config and writes the domid until the build is done.
  auto op = std::make_unique<PendingCreate>();
  op->self = this;
  op->domid = *domid;
  op->serial = next_serial_++;
  libxl_domain_config_init(&op->cfg);
  if (auto built = build_config(ctx_, spec, *type, xen_name, &op->cfg); !built) {
    libxl_domain_config_dispose(&op->cfg);
    return std::unexpected(built.error());
  }
  op->cfg.c_info.domid = *domid;

  Incarnation inc;
  inc.info = {*domid, spec.name, -1, platform::Clock::now()};
  inc.xen_name = xen_name;
  inc.serial = op->serial;
  inc.building = true;
  if (store_ && ctl) {
    // Watches for the runtime's vchan; it appears once the domain runs.
    auto link = VchanLink::open(io_, *store_, static_cast<int>(*domid), control_path(static_cast<int>(*domid)));
    if (!link) {
      libxl_domain_config_dispose(&op->cfg);
      return std::unexpected(link.error());
    }
    *ctl = std::move(link->first);
    inc.link = std::move(link->second);
  }
  auto info = inc.info;
  live_[*domid] = std::move(inc);  // before the call: the callback may come inside it
  building_[*domid] = xen_name;

  libxl_asyncop_how how{};
  how.callback = &XenDomainManager::create_done;
  how.u.for_callback = op.get();
  auto* raw = op.release();
  int rc = libxl_domain_create_new(ctx_, &raw->cfg, &raw->out, &how, nullptr);
  if (rc != 0) {  // not started: no callback comes
    building_.erase(*domid);
    live_.erase(*domid);
    libxl_domain_config_dispose(&raw->cfg);
    delete raw;
    return libxl_fail(what, "libxl_domain_create_new", rc);
  }
  return info;
}

// libxl's callback: may run inside any libxl call; finish on the io_context.
void XenDomainManager::create_done(libxl_ctx*, int rc, void* p) {
  std::unique_ptr<PendingCreate> op(static_cast<PendingCreate*>(p));
  libxl_domain_config_dispose(&op->cfg);
  auto& self = *op->self;
  auto it = self.building_.find(op->domid);
  if (it == self.building_.end()) return;
  std::string xen_name = it->second;
  boost::asio::post(self.io_, [weak = std::weak_ptr<XenDomainManager*>(self.self_), id = op->domid,
                               serial = op->serial, xen_name, rc] {
    if (auto s = weak.lock()) (*s)->on_built(id, serial, xen_name, rc);
  });
}

// The domain is built (paused) or its build failed. A failure is the
// incarnation's death; so is anything failing before it runs.
void XenDomainManager::on_built(DomId id, uint64_t serial, const std::string& xen_name, int rc) {
  building_.erase(id);  // only now: the destructor waits for this
  std::string what = "creating domain '" + xen_name + "'";
  auto it = live_.find(id);
  bool wanted = it != live_.end() && it->second.serial == serial && !it->second.destroyed;
  auto discard = [&] {
    if (libxl_domain_info(ctx_, nullptr, id) != ERROR_DOMAIN_NOTFOUND) (void)destroy_in_background(id, xen_name);
    else destroying_.erase(id);
  };
  if (!wanted) {  // killed while libxl built it: its death is reported already
    discard();
    return;
  }
  Incarnation& inc = it->second;
  inc.building = false;
  auto died = [&](const char* call, int code) {
    std::string reason = "create failed (" + std::string(call) + " returned " + libxl_error_name(code) + ")";
    std::fprintf(stderr, "shadowd: xen: %s: %s\n", what.c_str(), reason.c_str());
    discard();
    report_death(id, serial, reason, 0);
  };
  if (rc != 0) return died("libxl_domain_create_new", rc);
  // Death events before the domain runs: nothing it does can be missed.
  libxl_evgen_domain_death* evgen = nullptr;
  if (rc = libxl_evenable_domain_death(ctx_, id, serial, &evgen); rc != 0) return died("libxl_evenable_domain_death", rc);
  inc.evgen = evgen;
  if (rc = libxl_domain_unpause(ctx_, id, nullptr); rc != 0) return died("libxl_domain_unpause", rc);
}

// ---- kill / restart --------------------------------------------------------

// Destroying a live domain takes libxl seconds (it waits for the backends of
// the domain's devices and their hotplug scripts), which shadowd's loop must
// not wait for. Paused, the domain never runs again, so it is dead to its
// peers at once; libxl finishes the destroy on the io_context.
Result<void> XenDomainManager::destroy_in_background(DomId id, const std::string& name) {
  if (int rc = libxl_domain_pause(ctx_, id, nullptr); rc != 0) {
    if (libxl_domain_info(ctx_, nullptr, id) == ERROR_DOMAIN_NOTFOUND) {  // gone already
      destroying_.erase(id);
      return {};
    }
    return libxl_fail("pausing " + domain_label(id, name) + " to destroy it", "libxl_domain_pause", rc);
  }
  auto* op = new PendingDestroy{this, id};
  libxl_asyncop_how how{};
  how.callback = &XenDomainManager::destroy_done;
  how.u.for_callback = op;
  destroying_[id] = name;
  int rc = libxl_domain_destroy(ctx_, id, &how);  // may complete (and call back) in here
  if (rc == 0) return {};
  destroying_.erase(id);  // not started: no callback comes
  delete op;
  if (rc == ERROR_DOMAIN_NOTFOUND || libxl_domain_info(ctx_, nullptr, id) == ERROR_DOMAIN_NOTFOUND) return {};
  return libxl_fail("destroying " + domain_label(id, name), "libxl_domain_destroy", rc);
}

// libxl's callback: may run inside any libxl call, so only bookkeeping here.
void XenDomainManager::destroy_done(libxl_ctx*, int rc, void* p) {
  std::unique_ptr<PendingDestroy> op(static_cast<PendingDestroy*>(p));
  auto& self = *op->self;
  auto it = self.destroying_.find(op->id);
  if (it == self.destroying_.end()) return;
  std::string name = it->second;
  self.destroying_.erase(it);
  if (rc == 0 || rc == ERROR_DOMAIN_NOTFOUND) return;
  boost::asio::post(self.io_, [weak = std::weak_ptr<XenDomainManager*>(self.self_), id = op->id, name, rc] {
    auto s = weak.lock();
    if (!s || libxl_domain_info((*s)->ctx_, nullptr, id) == ERROR_DOMAIN_NOTFOUND) return;
    std::fprintf(stderr, "shadowd: xen: destroying %s failed: libxl_domain_destroy returned %s; it stays paused\n",
                 domain_label(id, name).c_str(), libxl_error_name(rc).c_str());
  });
}

Result<void> XenDomainManager::kill(DomId id, int signal) {
  auto it = live_.find(id);
  if (it == live_.end() || it->second.destroyed) return {};  // already dead or dying: idempotent
  if (it->second.building)
    destroying_[id] = it->second.xen_name;  // on_built destroys it once libxl is done
  else if (auto d = destroy_in_background(id, it->second.xen_name); !d)
    return d;
  it->second.destroyed = true;
  // libxl will report DOMAIN_DEATH too; whichever comes first is reported.
  uint64_t serial = it->second.serial;
  boost::asio::post(io_, [weak = std::weak_ptr<XenDomainManager*>(self_), id, serial, signal] {
    if (auto self = weak.lock()) (*self)->report_death(id, serial, "killed (destroyed by shadowd)", signal);
  });
  return {};
}

// ---- death -----------------------------------------------------------------

// May run inside any libxl call (reentrancy allowed, but our state may be
// mid-change): copy what matters, free the event, handle it on the io_context.
void XenDomainManager::event_occurs(void* user, libxl_event* ev) {
  auto* self = static_cast<XenDomainManager*>(user);
  Event e;
  e.domid = ev->domid;
  e.type = ev->type;
  e.serial = ev->for_user;
  if (ev->type == LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN) e.shutdown_reason = ev->u.domain_shutdown.shutdown_reason;
  libxl_event_free(self->ctx_, ev);
  boost::asio::post(self->io_, [weak = std::weak_ptr<XenDomainManager*>(self->self_), e] {
    if (auto s = weak.lock()) (*s)->on_event(e);
  });
}

// Must not call libxl. Events may be lost from now on: record it so that
// create() refuses, and say so on stderr.
void XenDomainManager::disaster(void* user, libxl_event_type type, const char* msg, int errnoval) {
  auto* self = static_cast<XenDomainManager*>(user);
  self->disaster_ = std::string(msg ? msg : "unknown") + (errnoval ? std::string(": ") + std::strerror(errnoval) : "");
  std::fprintf(stderr, "shadowd: xen: libxl disaster (event type %d): %s\n", static_cast<int>(type),
               self->disaster_.c_str());
}

void XenDomainManager::on_event(const Event& ev) {
  auto it = live_.find(ev.domid);
  if (it == live_.end() || it->second.serial != ev.serial) return;  // reported already, or an older domid user
  Incarnation& inc = it->second;
  if (ev.type == LIBXL_EVENT_TYPE_DOMAIN_DEATH) {
    if (inc.destroyed)
      report_death(ev.domid, ev.serial, "killed (destroyed by shadowd)", SIGKILL);
    else
      report_death(ev.domid, ev.serial, "destroyed", 0);
    return;
  }
  if (ev.type != LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN) return;
  // It shut down but still exists (xl's on_crash=destroy is ours to do):
  // destroy it first, so the next incarnation can take its name.
  if (!inc.destroyed) {
    if (auto d = destroy_in_background(ev.domid, inc.xen_name); !d)
      std::fprintf(stderr, "shadowd: %s\n", d.error().message.c_str());
    inc.destroyed = true;
  }
  report_death(ev.domid, ev.serial, shutdown_reason(ev.shutdown_reason), 0);
}

void XenDomainManager::report_death(DomId id, uint64_t serial, std::string reason, int signal) {
  auto it = live_.find(id);
  if (it == live_.end() || it->second.serial != serial) return;  // reported already
  platform::DeathInfo d;
  d.id = id;
  d.name = it->second.info.name;
  d.signal = signal;
  d.reason = std::move(reason);
  d.detected = platform::Clock::now();
  if (it->second.evgen) libxl_evdisable_domain_death(ctx_, it->second.evgen);
  live_.erase(it);
  if (on_death_) on_death_(d);
}

}  // namespace sd::xen
