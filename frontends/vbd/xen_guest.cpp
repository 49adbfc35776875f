#include "vbd/xen_guest.hpp"

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <map>
#include <string>

#include "common/xen_peer.hpp"
#include "sd/platform/xen/guest_backend.hpp"
#include "vbd/blkfront.hpp"
#include "vbd/guest_disk.hpp"

extern "C" {
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>
}

namespace sd::front {

namespace {

// What this backend tells xen-blkfront: the disk as shadowd described it
// (it never changes across driver domains), one single-page ring, no
// persistent grants or indirect segments (every segment is grant-copied).
std::map<std::string, std::string> disk_keys(const blkif::DiskState& d) {
  std::map<std::string, std::string> k{{"sectors", std::to_string(d.sectors)},
                                       {"info", std::to_string(d.readonly ? VDISK_READONLY : 0)},
                                       {"sector-size", std::to_string(blkif::kSectorSize)},
                                       {"physical-sector-size", std::to_string(blkif::kSectorSize)},
                                       {"feature-flush-cache", (d.features & blkif::kFeatureFlush) ? "1" : "0"},
                                       {"feature-persistent", "0"}};
  if ((d.features & blkif::kFeatureDiscard) && !d.readonly) {
    k["feature-discard"] = "1";
    k["discard-granularity"] = std::to_string(blkif::kPageSize);
    k["discard-alignment"] = "0";
  }
  return k;
}

// The guest's blkfront, once it connects; retried while it does not come.
Result<std::unique_ptr<GuestDisk>> connect_guest(uint32_t guest, uint64_t handle, Blkfront& disk) {
  std::string back = xen::proxy_backend_dir("vbd", guest, handle);
  auto g = xen::connect_guest_frontend(back, disk_keys(disk.disk()), {"ring-ref"}, {"protocol"}, 60000);
  if (!g) return std::unexpected(g.error());
  // A guest of another ABI lays the ring out differently: refuse it.
  if (g->keys.count("protocol") && g->keys["protocol"] != XEN_IO_PROTO_ABI_NATIVE)
    return fail(Code::kInvalidInput, "the guest's blkfront at " + back + " speaks " + g->keys["protocol"] +
                                         ", this backend " + XEN_IO_PROTO_ABI_NATIVE);
  unsigned workers = std::clamp<unsigned>(disk.disk().queue_limit, 1, blkif::kRingSize);
  return GuestDisk::attach(g->rings[0], std::move(g->evts[0]), std::make_unique<GuestCopies>(std::move(g->grants)), disk,
                           disk.disk(), workers, "domain " + std::to_string(guest) + " vbd " + std::to_string(handle),
                           g->keep);
}

}  // namespace

int serve_xen_guest_disk(uint32_t guest, uint64_t handle, ctl::Channel shadowd) {
  auto front = Blkfront::attach(std::move(shadowd), std::make_unique<XenPools>(0));  // pools granted by dom0
  if (!front) {
    std::fprintf(stderr, "sd-blkfront: %s\n", front.error().to_string().c_str());
    return 1;
  }
  std::fprintf(stderr, "sd-blkfront: serving domain %u's blkfront (backend %s) from dom0, %llu sectors\n", guest,
               xen::proxy_backend_dir("vbd", guest, handle).c_str(),
               static_cast<unsigned long long>((*front)->disk().sectors));
  const std::string back = xen::proxy_backend_dir("vbd", guest, handle);
  const auto name = static_cast<unsigned long long>(handle);
  // The guest's side comes, and may leave (its blkfront closed or
  // reloaded, its domain gone) and come back: served each time.
  while (!(*front)->gone()) {
    auto disk = connect_guest(guest, handle, **front);
    if (!disk) {
      std::fprintf(stderr, "sd-blkfront: domain %u vbd %llu: %s (trying again)\n", guest, name,
                   disk.error().to_string().c_str());
      ::poll(nullptr, 0, 1000);
      continue;
    }
    std::fprintf(stderr, "sd-blkfront: domain %u vbd %llu: the guest's side is up\n", guest, name);
    auto checked = std::chrono::steady_clock::now();
    while (!(*front)->gone()) {
      pollfd p[2] = {{(*disk)->wait_fd(), POLLIN, 0}, {(*disk)->done_fd(), POLLIN, 0}};
      if (::poll(p, 2, 200) < 0 && errno != EINTR) return 1;
      (*disk)->serve();
      if (std::chrono::steady_clock::now() - checked < std::chrono::milliseconds(500)) continue;
      checked = std::chrono::steady_clock::now();
      if (!xen::guest_frontend_left(back)) continue;
      // Its rings unmapped once the requests the workers hold are done.
      disk->reset();
      xen::close_guest_backend(back);
      std::fprintf(stderr, "sd-blkfront: domain %u vbd %llu: the guest's side left; waiting for it again\n", guest,
                   name);
      break;
    }
  }
  return 0;
}

}  // namespace sd::front
