// Link-level fakes of the Xen C libraries the Xen platform calls (the libxenbe
// XenEvtchnMock idea): fake_libxl.cpp and fake_xenstore.cpp define the
// libxl_* / xs_* / xtl_* functions with extern "C" linkage, so
// xen_platform_test links the real platform/xen sources without libxl or
// libxenstore. Each fake records its calls and has forced-error modes; the
// state below is global and reset by the fixtures.
//
// libxl's event path is real: the fake registers an eventfd through the
// application's osevent hooks (as libxl registers its xenstore fd) and, when
// the application reports it readable (libxl_osevent_occurred_fd), delivers
// the queued DOMAIN_SHUTDOWN / DOMAIN_DEATH events through event_occurs.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace fake {

// ---- libxl -----------------------------------------------------------------

struct CreatedDomain {
  uint32_t domid = 0;
  std::string name;
  int c_type = 0;          // c_info.type
  int b_type = 0;          // b_info.type (libxl_domain_build_info_init_type)
  int driver_domain = 0;   // c_info.driver_domain: 1 true, -1 false, 0 default
  uint64_t max_memkb = 0, target_memkb = 0;
  int max_vcpus = 0;
  int avail_vcpus = 0;     // bits set in b_info.avail_vcpus
  std::string kernel, ramdisk, cmdline;
  struct Nic {
    std::string bridge, script;
    uint8_t mac[6];
    int backend_domid;
  };
  std::vector<Nic> nics;
  struct Disk {
    std::string target, vdev, script;
    int format, readwrite, backend_domid;
  };
  std::vector<Disk> disks;
};

struct Libxl {
  // Forced errors: 0 = the call succeeds.
  int ctx_alloc_rc = 0;
  int create_rc = 0;
  int evenable_rc = 0;
  int unpause_rc = 0;
  int destroy_rc = 0;  // forced even for an existing domain (which then stays)
  int pause_rc = 0;
  // Asynchronous destroys (ao_how with a callback): the rc the callback gets
  // (not 0: the domain stays), and whether they wait for libxl_finish_destroys
  // (or libxl_finish_when_driven).
  int async_destroy_rc = 0;
  bool hold_destroys = false;
  // The same for asynchronous creates: the callback's rc, and whether the
  // build waits for libxl_finish_creates.
  int async_create_rc = 0;
  bool hold_creates = false;
  bool finish_held_when_driven = false;  // see libxl_finish_when_driven

  // Domains that exist (create adds, destroy and vanish remove).
  std::set<uint32_t> domains;
  uint32_t next_domid = 1;

  // Recorded calls.
  std::vector<CreatedDomain> created;
  std::vector<uint32_t> unpaused;
  std::vector<uint32_t> destroyed;  // every libxl_domain_destroy call
  std::vector<uint32_t> paused;     // every successful libxl_domain_pause
  std::vector<std::string> calls;   // "create[-async] <id>", "pause <id>", "destroy[-async] <id>", in order
  int destroys_in_flight = 0;       // asynchronous destroys whose callback has not run
  int creates_in_flight = 0;        // ... creates
  int ctx_allocs = 0, ctx_frees = 0;
  int config_disposes = 0;
  int childproc_mode = -1;
  int death_watches = 0;  // enabled and not yet disabled
  int events_freed = 0;
  int loggers = 0;         // created and not yet destroyed

  // The osevent path.
  int fd_registrations = 0, fd_deregistrations = 0;
  int occurred_fd = 0;       // libxl_osevent_occurred_fd calls with our token
  int occurred_fd_bogus = 0; // ... with anything else
  short last_revents = 0;
  int occurred_timeout = 0;
};

Libxl& libxl();
void libxl_reset();  // call with no ctx alive

// Queue an event for `domid` and make the registered fd readable; it reaches
// the application when its loop calls libxl_osevent_occurred_fd.
void libxl_deliver_death(uint32_t domid);                  // the domain is gone
void libxl_deliver_shutdown(uint32_t domid, int reason);   // LIBXL_SHUTDOWN_REASON_*
// The domain disappears without any event (someone else destroyed it and the
// event is still on its way).
void libxl_vanish(uint32_t domid);
// libxl's disaster callback, as when event handling broke.
void libxl_disaster(const char* msg);
// Completes the held asynchronous destroys (hold_destroys) / creates (hold_creates).
void libxl_finish_destroys();
void libxl_finish_creates();
// From now on the held ones finish once the application drives libxl's fd
// (as libxl's own operations progress only then); makes the fd readable.
void libxl_finish_when_driven();

// Drive the application's osevent hooks directly.
void libxl_make_fd_readable();             // no event: only the fd
void libxl_modify_fd(short events);        // fd_modify hook
void libxl_deregister_fd();                // fd_deregister hook
void libxl_register_timeout(int ms_from_now);  // timeout_register hook
void libxl_timeout_now();                  // timeout_modify hook with {0,0}

// ---- xenstore --------------------------------------------------------------

struct Xenstore {
  // Forced errors: 0 = the call succeeds; otherwise it fails with this errno.
  int open_errno = 0;
  int read_errno = 0;
  int write_errno = 0;
  int rm_errno = 0;
  int directory_errno = 0;
  int watch_errno = 0;
  int fileno_errno = 0;
  int check_watch_errno = 0;

  int perms_errno = 0;

  std::map<std::string, std::string> kv;
  std::vector<std::pair<std::string, std::string>> writes;  // every xs_write, in order
  // xs_set_permissions per path: (domid, XS_PERM_*), the owner first.
  std::map<std::string, std::vector<std::pair<unsigned int, unsigned int>>> perms;
  std::vector<std::pair<std::string, std::string>> watches;  // (path, token)
  std::deque<std::pair<std::string, std::string>> pending;   // events (path, token)

  int opens = 0, closes = 0;
  int unwatches = 0;
};

Xenstore& xenstore();
void xenstore_reset();  // call with no handle open

}  // namespace fake

struct libxenvchan;

namespace fake {

// ---- libxenvchan -----------------------------------------------------------
// A server and a client that name the same xenstore path are connected
// in memory; each end's fd_for_select is an eventfd the other end's
// send/recv/close signals, as the event channel does.

struct Vchan {
  // Forced errors: 0 = the call succeeds; otherwise it fails with this errno.
  int server_errno = 0;
  int client_errno = 0;
  bool send_fails = false;  // libxenvchan_send returns -1
  size_t ring_bytes = 4096; // each direction
  int servers = 0, clients = 0, closes = 0, live = 0;
};

Vchan& vchan();
void vchan_reset();  // call with no vchan open
// The server end offered at `path` (nullptr if none): tests act as the
// domain's runtime through the libxenvchan_* calls on it.
::libxenvchan* vchan_server_at(const std::string& path);

}  // namespace fake

namespace fake {

// ---- libxenevtchn and libxengnttab (gntshr + gnttab) -------------------------
// Event channels: ports offered with bind_unbound_port can be bound once with
// bind_interdomain; notify() makes the other handle's fd readable and queues
// the port for its xenevtchn_pending(). Grants: share_pages puts the pages in
// a memfd, so map_grant_ref / map_domain_grant_refs really share memory with
// the owner's mapping (as gntdev does).
struct Gnt {
  int share_errno = 0;   // xengntshr_share_pages fails
  int map_errno = 0;     // xengnttab_map_* fails
  int bind_errno = 0;    // xenevtchn_bind_interdomain fails
  int shared_pages = 0;  // currently shared
  int mapped_pages = 0;  // currently mapped by peers
  int notifies = 0;
  int copies = 0;        // grant-copy segments done
  int open_handles = 0;  // evtchn + gnttab + gntshr handles
};
Gnt& gnt();
void gnt_reset();

}  // namespace fake
