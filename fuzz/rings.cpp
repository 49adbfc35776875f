// Fuzz target: what the other end can write into a shared ring page. The
// first byte picks the ring and the end under test; the rest is the other
// end's part of the page (its producer index and its slots):
//   a frontend reading responses (ids checked against those in flight),
//   a backend reading requests, each through its class's validators, or
//   a frame's headers and virtio-net header (the vif's offloads).
// Every impossible index or id must be an error, never a value, and
// nothing may read outside the page.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "sd/core/blkif.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/sndif.hpp"

namespace {

alignas(4096) uint8_t page[4096];

// Copies the input over [at, end of page) after zeroing the page's rest.
void fill_from(size_t at, const uint8_t* data, size_t size) {
  std::memset(page + at, 0, sizeof(page) - at);
  std::memcpy(page + at, data, std::min(size, sizeof(page) - at));
}

template <class T, class Check>
void front(const uint8_t* data, size_t size, Check check) {
  auto ring = sd::ring::FrontRing<T>::attach(page, sizeof(page), true);
  if (!ring) std::abort();
  sd::ring::IdTable ids(ring->size());
  unsigned n = size ? data[0] % (ring->size() + 1) : 0;  // requests in flight, as a frontend has them
  for (unsigned i = 0; i < n; ++i) {
    typename T::Req r{};
    r.id = static_cast<decltype(r.id)>(i);
    if (!sd::ring::put_checked_request(*ring, ids, r)) std::abort();
  }
  ring->push_requests();
  if (size) ++data, --size;
  // The backend's part: rsp_prod and the slots.
  auto* s = reinterpret_cast<typename T::Sring*>(page);
  if (size >= 4) std::memcpy(&s->rsp_prod, data, 4), data += 4, size -= 4;
  fill_from(offsetof(typename T::Sring, ring), data, size);
  size_t got = 0;
  for (unsigned i = 0; i <= ring->size(); ++i) {
    auto r = sd::ring::get_checked_response(*ring, ids);
    if (!r || !r->has_value()) break;
    check(**r);
    ++got;
  }
  if (got > n) std::abort();  // more answers than questions got through
}

template <class T, class Check>
void back(const uint8_t* data, size_t size, Check check) {
  auto ring = sd::ring::BackRing<T>::attach(page, sizeof(page), true);
  if (!ring) std::abort();
  auto* s = reinterpret_cast<typename T::Sring*>(page);
  if (size >= 4) std::memcpy(&s->req_prod, data, 4), data += 4, size -= 4;
  fill_from(offsetof(typename T::Sring, ring), data, size);
  for (unsigned i = 0; i <= ring->size(); ++i) {
    auto r = ring->get_request();
    if (!r || !r->has_value()) break;
    check(**r);
  }
}

void frame(const uint8_t* data, size_t size) {
  sd::netif::Offload o;
  if (size >= sizeof(sd::netif::VnetHdr)) {
    sd::netif::VnetHdr h;
    std::memcpy(&h, data, sizeof(h));
    data += sizeof(h), size -= sizeof(h);
    (void)sd::netif::from_vnet(h, o);
  }
  if (auto l4 = sd::netif::find_l4(data, size); l4 && l4->end > size) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t pick = data[0] % 8;
  ++data, --size;
  sd::netif::Offload o;
  switch (pick) {
    case 0: front<sd::netif::TxTraits>(data, size, [](const netif_tx_response&) {}); break;
    case 1: front<sd::netif::RxTraits>(data, size, [](const netif_rx_response&) {}); break;
    case 2:
      front<sd::blkif::Traits>(data, size, [](const blkif_response& r) { (void)sd::blkif::plausible_status(r.status); });
      break;
    case 3:
      front<sd::sndif::Traits>(data, size, [](const xensnd_resp& r) { (void)sd::sndif::plausible_status(r.status); });
      break;
    case 4:
      back<sd::netif::TxTraits>(data, size, [&o](const netif_tx_request& r) { (void)sd::netif::read_gso_extra(r, o); });
      break;
    case 5:
      back<sd::blkif::Traits>(data, size, [](const blkif_request& r) { (void)sd::blkif::check_request(r, 1 << 21); });
      break;
    case 6:
      back<sd::sndif::Traits>(data, size, [](const xensnd_req& r) {
        if (r.operation == XENSND_OP_OPEN) (void)sd::sndif::check_open(r.op.open);
        if (r.operation == XENSND_OP_WRITE) (void)sd::sndif::check_rw(r.op.rw, sd::sndif::kMaxBuffer);
      });
      break;
    default: frame(data, size); break;
  }
  return 0;
}
