// Driver domains as real Xen domains, through libxl.
//
//   create   DomainSpec -> libxl_domain_config (PV unless spec.type says
//            otherwise) with a domid chosen here -> libxl_domain_create_new
//            in the background; create() returns at once; when libxl is done:
//            death events enabled -> libxl_domain_unpause. A build that fails
//            is the incarnation's death ("create failed (...)")
//   kill     pause, then libxl_domain_destroy in the background (every signal
//            means destroy); the death is reported at once; a domain that is
//            already gone counts as killed
//   death    libxl's DOMAIN_SHUTDOWN / DOMAIN_DEATH events, with libxl's fds
//            and timeouts on the caller's io_context (osevent.hpp); reported
//            once per incarnation, on the io_context, through on_death()
//
// Death reasons:
//   "killed (destroyed by shadowd)"  kill() destroyed it (signal = the one asked for)
//   "crashed (domain crash)"         it crashed (SHUTDOWN, reason crash)
//   "hang (watchdog)"                its Xen watchdog fired
//   "shut down (poweroff|reboot|suspend|soft reset)"
//   "destroyed"                      it vanished without shutting down (xl destroy)
// A domain that shut down is destroyed (in the background) when its death is
// reported; a name still held by a domain being destroyed is not reused.
//
// Names: Xen needs unique domain names, but an active and a standby
// incarnation share the spec's name. The first live incarnation gets the
// spec's name; another one created while it lives gets "<name>-<serial>".
// DomainInfo.name and DeathInfo.name are always the spec's name.
//
// Control channel: create() returns *ctl at once; it is a libxenvchan the
// domain's runtime (drvdom --xen) offers at control_path(domid), connected
// when it appears (vchan_link.hpp). Without a store (set_store) *ctl stays
// invalid. Builds and destroys run in the background, driven by the
// io_context: shadowd's loop never waits for Xen.
#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>

extern "C" {
#include <libxl.h>
#include <libxl_event.h>
#include <libxl_utils.h>
#include <xentoollog.h>
}

#include "sd/core/platform.hpp"
#include "xen/osevent.hpp"
#include "xen/vchan_link.hpp"

namespace sd::xen {

// "ERROR_FAIL (-3)" for a libxl error code.
std::string libxl_error_name(int rc);

class XenDomainManager final : public platform::DomainManager {
 public:
  // Opens a libxl context (logging errors to stderr) driven by `io`, with
  // libxl reaping only its own children (shadowd waits for its own).
  // kUnavailable if libxl_ctx_alloc fails.
  static Result<std::unique_ptr<XenDomainManager>> open(boost::asio::io_context& io);
  // Destroys the live incarnations (as the local platform kills its
  // processes), then frees the libxl context.
  ~XenDomainManager() override;

  // kInvalidInput: the spec cannot describe a domain (unknown type, PV/PVH
  // without kernel, memory or vcpus < 1) or libxl rejected it (ERROR_INVAL);
  // kRetry: libxl ran out of memory, a lock or time; kEscalate: libxl
  // reported a disaster earlier; kSystem: anything else. The message names
  // the domain, the libxl call and its error; libxl's own log says why.
  Result<platform::DomainInfo> create(const platform::DomainSpec& spec, ctl::Channel* ctl) override;
  Result<void> kill(platform::DomId id, int signal) override;
  // kInvalidInput if `id` is not a live incarnation of this manager.
  void on_death(DeathHandler h) override { on_death_ = std::move(h); }
  void forget(const std::string&) override {}  // nothing persists per name on Xen (yet)
  // A Xen domain boots a kernel before its runtime can say Ready.
  std::chrono::milliseconds start_timeout() const override { return std::chrono::seconds(120); }
  // Where control vchans are watched for (the platform's XenStore).
  void set_store(platform::Store* store) { store_ = store; }

  // The incarnation's name in Xen (`xl list`); nullopt if not live here.
  std::optional<std::string> xen_name(platform::DomId id) const;

 private:
  struct Incarnation {
    platform::DomainInfo info;
    std::string xen_name;
    uint64_t serial = 0;  // libxl_ev_user of its death events
    libxl_evgen_domain_death* evgen = nullptr;
    bool destroyed = false;  // kill() destroyed it; its death report is queued
    bool building = false;   // libxl is still building it
    std::unique_ptr<VchanLink> link;  // its control channel
  };
  // What event_occurs copies out of a libxl_event before freeing it.
  struct Event {
    platform::DomId domid = 0;
    libxl_event_type type{};
    int shutdown_reason = 0;
    uint64_t serial = 0;
  };

  XenDomainManager(boost::asio::io_context& io, xentoollog_logger* log);
  static void event_occurs(void* user, libxl_event* ev);
  static void disaster(void* user, libxl_event_type type, const char* msg, int errnoval);
  static const libxl_event_hooks kEventHooks;
  static const libxl_childproc_hooks kChildHooks;

  std::string pick_xen_name(const std::string& name) const;
  void on_event(const Event& ev);
  // Removes the incarnation and reports its death.
  void report_death(platform::DomId id, uint64_t serial, std::string reason, int signal);
  // Pause now, destroy asynchronously (destroy_done); success if gone already.
  Result<void> destroy_in_background(platform::DomId id, const std::string& name);
  struct PendingDestroy {
    XenDomainManager* self;
    platform::DomId id;
  };
  static void destroy_done(libxl_ctx* ctx, int rc, void* op);
  struct PendingCreate {
    XenDomainManager* self;
    platform::DomId domid;
    uint64_t serial;
    libxl_domain_config cfg;
    uint32_t out = 0;
  };
  static void create_done(libxl_ctx* ctx, int rc, void* op);
  void on_built(platform::DomId id, uint64_t serial, const std::string& xen_name, int rc);
  std::optional<platform::DomId> pick_domid();

  boost::asio::io_context& io_;
  xentoollog_logger* log_ = nullptr;
  libxl_ctx* ctx_ = nullptr;
  std::unique_ptr<LibxlOsEvents> osevents_;
  DeathHandler on_death_;
  platform::Store* store_ = nullptr;
  std::map<platform::DomId, Incarnation> live_;
  std::map<platform::DomId, std::string> destroying_;  // background destroys: domid -> Xen name
  std::map<platform::DomId, std::string> building_;    // background builds: domid -> Xen name
  platform::DomId next_domid_ = 1;
  uint64_t next_serial_ = 1;
  std::string disaster_;  // set once libxl reported one: no more creates
  // Posted handlers hold a weak reference: after destruction they do nothing.
  std::shared_ptr<XenDomainManager*> self_ = std::make_shared<XenDomainManager*>(this);
};

}  // namespace sd::xen
