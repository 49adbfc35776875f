// The platform seam: everything shadowd needs from a hypervisor, behind one
// small interface, with one implementation per platform (platform/local,
// platform/xen) picked at run time by make_platform().
//
//   DomainManager  create / kill / restart driver domains, report their death
//   EventChannel   notify the other end; an fd that Boost.Asio can wait on
//   Store          xenstore-style key/value tree with watches
//   DevicePlumbing one device connection's pages and event channel, and how
//                  they reach its frontend and each backend incarnation
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sd/core/control_channel.hpp"
#include "sd/core/error.hpp"
#include "sd/core/fd.hpp"

namespace sd::platform {

using DomId = uint32_t;
using GrantRef = uint32_t;
using Clock = std::chrono::steady_clock;

// What to start. `cfg_file` is the operator's xl cfg (used as-is on Xen);
// the local platform uses the rest.
struct DomainSpec {
  std::string name;
  std::filesystem::path cfg_file;
  std::optional<int64_t> memory_mb;
  std::string netns;  // local: persistent named netns the domain joins ("" = fresh one)
  // Xen: what libxl builds the domain from (from the xl cfg; unset = libxl's default).
  std::optional<int64_t> vcpus;
  std::string type;     // "pv" (default when empty), "pvh" or "hvm"
  std::string kernel;   // guest kernel image in dom0's file system ("" = none)
  std::string ramdisk;  // initrd ("" = none)
  std::string cmdline;  // kernel command line (xl's `cmdline`, else `extra`)
  bool driver_domain = false;  // xl's driver_domain=1: may run backends
  // A spare incarnation (standby, zygote): started behind all other work,
  // until set_background(id, false) at its promotion (local: nice 10).
  bool background = false;
  // Xen: NICs dom0 gives the driver domain (its network hardware; a
  // passed-through NIC in production): the xl vif keys of its cfg's
  // `vif = [...]` entries served by Domain-0 (bridge, mac, script).
  std::vector<std::map<std::string, std::string>> nics;
  // Xen: disks dom0 gives it (its storage; a passed-through controller in
  // production): the xl disk keys of its cfg's `disk = [...]` entries served
  // by Domain-0 (target, vdev, format, access, script).
  std::vector<std::map<std::string, std::string>> disks;
};

// How an incarnation ended.
struct DeathInfo {
  DomId id = 0;
  std::string name;
  int exit_code = -1;  // >= 0 when it exited
  int signal = 0;      // > 0 when a signal ended it
  std::string reason;  // "killed (SIGKILL)", "crashed (SIGSEGV)", "seccomp violation (SIGSYS)", ...
  Clock::time_point detected;
};

// A running driver-domain incarnation.
struct DomainInfo {
  DomId id = 0;
  std::string name;
  int pid = -1;  // local platform: host pid; -1 elsewhere
  Clock::time_point started;
};

class DomainManager {
 public:
  using DeathHandler = std::function<void(const DeathInfo&)>;
  virtual ~DomainManager() = default;

  // Starts a new incarnation and returns its id. The control channel to the
  // driver-domain runtime is returned through *ctl. Death is reported once,
  // on the io_context, through the handler set with on_death().
  virtual Result<DomainInfo> create(const DomainSpec& spec, ctl::Channel* ctl) = 0;
  // Sends a signal (local) or destroys (Xen: SIGKILL = xl destroy). Idempotent:
  // killing a domain that is already dead succeeds.
  virtual Result<void> kill(DomId id, int signal) = 0;
  virtual void on_death(DeathHandler h) = 0;
  // Releases persistent resources of a named domain (local: its netns).
  virtual void forget(const std::string& name) = 0;
  // Runs a domain behind all other work (a spare incarnation being made
  // ready must not slow a recovery) or at normal priority again (promoted).
  // Best effort: local, its threads' nice value; Xen, nothing yet.
  virtual void set_background(DomId id, bool background) {
    (void)id;
    (void)background;
  }
  // How long a new incarnation may take to say Ready (a process starts in
  // milliseconds; a Xen domain boots a kernel first).
  virtual std::chrono::milliseconds start_timeout() const { return std::chrono::seconds(10); }
};

class EventChannel {
 public:
  virtual ~EventChannel() = default;
  virtual Result<void> notify() = 0;  // wake the other end
  virtual int wait_fd() const = 0;    // readable when the other end notified
  virtual Result<uint64_t> consume() = 0;  // clears pending notifications; returns how many (0 = none)
};

class Store {
 public:
  using WatchId = uint64_t;
  using WatchFn = std::function<void(const std::string& path)>;
  virtual ~Store() = default;
  virtual Result<std::string> read(const std::string& path) const = 0;  // kInvalidInput if absent
  virtual Result<void> write(const std::string& path, const std::string& value) = 0;
  virtual Result<void> remove(const std::string& path) = 0;  // removes the subtree
  virtual std::vector<std::string> list(const std::string& path) const = 0;  // direct children
  // Who may use an existing `path` (xenstore's permissions): `owner` reads
  // and writes it, `readers` read it, nobody else sees it (dom0 always can).
  virtual Result<void> set_access(const std::string& path, DomId owner, const std::vector<DomId>& readers) = 0;
  // Fires (on the io_context) for every change at or below `path`, and once
  // right after registration, as xenstore does.
  virtual WatchId watch(const std::string& path, WatchFn fn) = 0;
  virtual void unwatch(WatchId id) = 0;
};

// Which device connection to build (make_device_plumbing).
struct DeviceInfo {
  std::string guest;  // the guest's name
  std::string type;   // "vif", "vbd", "vsnd"
  int index = 0;      // its position among the guest's devices of that type
  size_t pages = 0;   // pool pages of one connection
  // Extra nodes a toolstack publishes for the device (Xen: mac for a vif).
  std::map<std::string, std::string> nodes;
  // The guest runs no frontend of the project's: its kernel's own driver
  // (xen-netfront) is served by a ring proxy in dom0 (policy guest_frontend).
  bool kernel_frontend = false;
  int stream = 0;  // vsnd: which of its card's playback streams
};

// Device memory shadowd lends every backend incarnation of a device (vsnd:
// a DAC voice's registers and DMA ring) and the interrupt it raises there.
// It outlives the incarnations. The local platform hands over its fds as
// they are; on Xen a grant names one domain and gntshr grants only pages it
// allocates, so the memory moves, for each incarnation, into pages shared
// with that domain, and raises an event channel offered to it.
class LentMemory {
 public:
  virtual ~LentMemory() = default;
  virtual size_t bytes() const = 0;  // whole pages
  // From now on the memory is `at` (kept alive by `keep`; its bytes() are
  // copied there first) and each interrupt also notifies `irq`.
  virtual void move_to(uint8_t* at, std::shared_ptr<void> keep, std::shared_ptr<EventChannel> irq) = 0;
};

// What a backend is handed besides the pool and the event channel: devices
// shadowd holds open (local: fds of the NIC socket, the disk, the DAC and its
// interrupt), the name of a device the driver domain owns itself (Xen: its
// NIC, its disk), and memory shadowd lends it (Xen: the DAC).
struct BackendResources {
  std::vector<int> fds;
  std::string device;
  LentMemory* memory = nullptr;
};

// One device connection as the platform builds it: the guest's pool of
// pages, the event channel between frontend and backend, and the handover
// of both to the frontend and to each backend incarnation. shadowd's device
// engine uses only this; how pages travel (fds on the local platform, grant
// refs on Xen) and where the device is published stay inside the platform.
class DevicePlumbing {
 public:
  virtual ~DevicePlumbing() = default;
  virtual size_t pages() const = 0;
  // shadowd's own mapping of pool page `ref` (active mode serves the rings
  // through it); nullptr if out of range or the pool is not shadowd's.
  virtual void* page(GrantRef ref) = 0;
  // The frontend's and the backend's ends of the event channel. shadowd
  // uses the backend's end while it answers the rings itself.
  virtual EventChannel& frontend_end() = 0;
  virtual EventChannel& backend_end() = 0;

  // Whether the guest's frontend runs in a domain of its own and grants its
  // pool itself to each backend domain (Xen): shadowd then neither builds
  // the guest's side nor starts its frontend, and every new backend needs
  // the frontend to repair (regrant) before it can be attached.
  virtual bool frontend_in_guest() const { return false; }
  // The guest's frontend, where the platform reaches it itself (Xen: the
  // vchan it offers); nullopt where shadowd starts it or awaits it (local).
  virtual std::optional<Result<ctl::Channel>> connect_frontend() { return std::nullopt; }
  // Hands the guest's frontend its end: `attach` (kDevAttach with the class's
  // payload) with the splitter log and its event-channel end, then every
  // pool page (its own memory).
  virtual Result<void> offer_frontend(ctl::Channel& ch, const ctl::Msg& attach, int splitter_log_fd) = 0;
  // The frontend repaired its ring for a new backend (kReconnected); on Xen
  // it carries the pool the guest granted, checked here (untrusted).
  virtual Result<void> frontend_repaired(const ctl::Msg&) { return {}; }

  // Grants the pool to exactly `peers` (a running backend and a warm
  // standby may share it); every other grant is withdrawn.
  virtual Result<void> grant_to(const std::vector<DomId>& peers) = 0;
  // Hands backend `peer` its end: `attach` with the backend's event-channel
  // end and the class's resources, then the pages granted to `peer`.
  virtual Result<void> offer_backend(ctl::Channel& ch, DomId peer, const ctl::Msg& attach,
                                     const BackendResources& resources) = 0;
  // Where the device is published (Xen: xenstore's XenbusStates): backend
  // `peer` is taking the device over / serves it.
  virtual void backend_starting(DomId) {}
  virtual void backend_serving(DomId) {}
  // Platform facts for `shadowctl devices` ("key": "value").
  virtual std::map<std::string, std::string> status() const { return {}; }
};

struct Options {
  std::filesystem::path state_dir = "/run/shadowd";  // local: per-domain roots and logs
  std::filesystem::path drvdom_binary;                // local: the driver-domain runtime
  // xen: the dom0 ring proxy of an unmodified guest's device, by type
  // ("vif": sd-netfront, "vbd": sd-blkfront).
  std::map<std::string, std::filesystem::path> ring_proxies;
};

class Platform {
 public:
  virtual ~Platform() = default;
  virtual std::string name() const = 0;
  virtual DomainManager& domains() = 0;
  virtual Store& store() = 0;
  // A device connection with a pool of `pages` pages (kUnavailable where
  // the platform has no plumbing for shadowed devices yet).
  virtual Result<std::unique_ptr<DevicePlumbing>> make_device_plumbing(const DeviceInfo& dev) = 0;
};

// name: "auto" (xen if available, else local), "local" or "xen".
// kUnavailable with a reason when the platform cannot run here.
Result<std::unique_ptr<Platform>> make_platform(const std::string& name, boost::asio::io_context& io,
                                                const Options& opts);

}  // namespace sd::platform
