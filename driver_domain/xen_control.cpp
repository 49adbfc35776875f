#include "xen_control.hpp"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "sd/platform/xen/evtchn.hpp"
#include "sd/platform/xen/grants.hpp"
#include "sd/platform/xen/vchan.hpp"

namespace sd::drvdom {

Result<XenControl> open_xen_control() {
  auto self = xen::self_identity();
  if (!self) return std::unexpected(self.error());
  XenControl out;
  out.domid = self->first;
  out.name = self->second;
  auto ch = xen::offer_channel(0, xen::control_path(out.domid));
  if (!ch) return std::unexpected(ch.error());
  out.channel = std::move(*ch);
  return out;
}

Result<XenDevice> attach_xen_pool(const ctl::XenPool& pool, size_t expected_pages) {
  if (pool.pages != expected_pages)
    return fail(Code::kInvalidInput, "pool of " + std::to_string(pool.pages) + " pages, expected " +
                                         std::to_string(expected_pages));
  std::string device(pool.device, strnlen(pool.device, sizeof(pool.device)));
  if (device.size() >= sizeof(pool.device)) return fail(Code::kInvalidInput, "the device's name is not terminated");
  // Timed, on the console: under emulation an attach has taken seconds.
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  auto t0 = Clock::now();
  auto mapped = xen::MappedPool::map(pool.owner, pool.dir_ref, pool.pages);
  if (!mapped) return std::unexpected(mapped.error());
  auto t1 = Clock::now();
  auto evt = xen::XenEventChannel::bind(pool.owner, pool.port);
  if (!evt) return std::unexpected(evt.error());
  std::fprintf(stderr, "drvdom: attached %u pages of domain %u: map %.1f ms, event channel %.1f ms\n", pool.pages,
               pool.owner, ms(t0, t1), ms(t1, Clock::now()));
  XenDevice d;
  std::shared_ptr<xen::MappedPool> keep(std::move(*mapped));
  // The mapping lives as long as the GrantedPages (which holds `keep`).
  d.pages = std::make_unique<GrantedPages>(keep->base(), keep->pages(), [keep](uint8_t*, size_t) {});
  d.evt = std::move(*evt);
  d.device = std::move(device);
  return d;
}

}  // namespace sd::drvdom
