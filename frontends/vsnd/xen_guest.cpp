#include "vsnd/xen_guest.hpp"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>

#include "common/xen_peer.hpp"
#include "sd/platform/xen/guest_backend.hpp"
#include "vsnd/guest_sound.hpp"
#include "vsnd/sndfront.hpp"

namespace sd::front {

namespace {

// The guest's snd-xen-front, once it connects: the stream's request ring
// and event page, each with its event channel, under the stream's own
// directory (card 0's PCM device 0, stream 0). No feature keys: the card's
// configuration is what shadowd published. Each try waits a quarter of a
// second: the splitter (single-threaded) is pumped between tries.
Result<std::unique_ptr<GuestSound>> connect_guest(uint32_t guest, uint64_t handle, Sndfront& out) {
  std::string back = xen::proxy_backend_dir("vsnd", guest, handle);
  auto g = xen::connect_guest_frontend(back, {}, {"0/0/ring-ref", "0/0/evt-ring-ref"}, {}, 250,
                                       {"0/0/event-channel", "0/0/evt-event-channel"});
  if (!g) return std::unexpected(g.error());
  return GuestSound::attach(g->rings[0], g->rings[1], std::move(g->evts[0]), std::move(g->evts[1]),
                            std::make_unique<GuestCopies>(std::move(g->grants)), out,
                            "domain " + std::to_string(guest) + " vsnd " + std::to_string(handle), g->keep);
}

}  // namespace

int serve_xen_guest_sound(uint32_t guest, uint64_t handle, ctl::Channel shadowd) {
  auto front = Sndfront::attach(std::move(shadowd), std::make_unique<XenPools>(0));  // pools granted by dom0
  if (!front) {
    std::fprintf(stderr, "sd-sndfront: %s\n", front.error().to_string().c_str());
    return 1;
  }
  const std::string back = xen::proxy_backend_dir("vsnd", guest, handle);
  const auto name = static_cast<unsigned long long>(handle);
  std::fprintf(stderr, "sd-sndfront: serving domain %u's snd-xen-front (backend %s) from dom0\n", guest,
               back.c_str());
  // The splitter is pumped while the guest's side is awaited too: shadowd's
  // repairs (a new pool per backend) come at any time.
  for (;;) {
    std::unique_ptr<GuestSound> sound;
    std::string last_why;
    while (!sound) {
      if (auto p = (*front)->pump(); !p) return 0;  // shadowd is gone
      auto s = connect_guest(guest, handle, **front);
      if (s) {
        sound = std::move(*s);
        std::fprintf(stderr, "sd-sndfront: domain %u vsnd %llu: the guest's side is up\n", guest, name);
      } else if (s.error().message != last_why) {  // said once, tried again every quarter second
        last_why = s.error().message;
        std::fprintf(stderr, "sd-sndfront: domain %u vsnd %llu: %s (trying again)\n", guest, name,
                     s.error().to_string().c_str());
      }
    }
    auto checked = std::chrono::steady_clock::now();
    for (;;) {
      pollfd p[3] = {{sound->wait_fd(), POLLIN, 0}, {(*front)->event_fd(), POLLIN, 0},
                     {(*front)->control_fd(), POLLIN, 0}};
      if (::poll(p, 3, 100) < 0 && errno != EINTR) return 1;
      if (auto r = (*front)->pump(); !r) return 0;  // shadowd is gone
      sound->serve();
      if (std::chrono::steady_clock::now() - checked < std::chrono::milliseconds(500)) continue;
      checked = std::chrono::steady_clock::now();
      if (!xen::guest_frontend_left(back)) continue;
      sound.reset();  // its rings unmapped
      xen::close_guest_backend(back);
      std::fprintf(stderr, "sd-sndfront: domain %u vsnd %llu: the guest's side left; waiting for it again\n", guest,
                   name);
      break;
    }
  }
}

}  // namespace sd::front
