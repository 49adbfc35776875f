// In-memory stand-ins for the frontends' Xen parts, shared by the vif tests.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "fake_guest_grants.hpp"
#include "fake_pools.hpp"
#include "vif/guest_port.hpp"
#include "vif/netfront.hpp"
#include "sd/core/ring.hpp"
#include "sd/platform/local/event_channel.hpp"

namespace sd::front {

using netif::kPageSize;

// An unmodified guest's kernel netfront in memory: its tx and rx rings (as
// xen-netfront initialises them), the pages it grants, and the dom0 port
// over them; `kick` wakes the port as the guest's event channel does.
struct KernelNetfront {
  uint8_t* tx_mem = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kPageSize));
  uint8_t* rx_mem = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kPageSize));
  std::optional<ring::FrontRing<netif::TxTraits>> tx;
  std::optional<ring::FrontRing<netif::RxTraits>> rx;
  GuestPages* pages = nullptr;  // owned by the port
  UniqueFd kick;
  ~KernelNetfront() {
    std::free(tx_mem);
    std::free(rx_mem);
  }
  // The rings initialised and the port that serves them (destroy the port first).
  Result<std::unique_ptr<GuestRingPort>> open(const std::string& name) {
    auto t = ring::FrontRing<netif::TxTraits>::attach(tx_mem, kPageSize, true);
    auto r = ring::FrontRing<netif::RxTraits>::attach(rx_mem, kPageSize, true);
    if (!t || !r) return fail(Code::kInvalidInput, "ring attach");
    tx.emplace(std::move(*t));
    rx.emplace(std::move(*r));
    auto grants = std::make_unique<GuestPages>();
    pages = grants.get();
    UniqueFd to_guest(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), to_port(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    kick.reset(::dup(to_port.get()));
    return GuestRingPort::attach(tx_mem, rx_mem,
                                 std::make_unique<local::LocalEventChannel>(std::move(to_guest), std::move(to_port)),
                                 std::move(grants), name);
  }
};

}  // namespace sd::front
