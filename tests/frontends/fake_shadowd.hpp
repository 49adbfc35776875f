// The test as shadowd on a frontend's control channel.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <cstdint>
#include <functional>
#include <optional>

#include "sd/core/control_channel.hpp"

namespace sd::front::test {

// Runs a frontend that has no thread of its own (the sound splitter)
// while the test waits for its messages; empty for one that has.
using Pump = std::function<void()>;

// The frontend's next message (waits up to 2 s).
inline std::optional<ctl::Msg> next_msg(ctl::Channel& shadowd, const Pump& pump = {}) {
  for (int waited = 0; waited < 2000; waited += 10) {
    if (pump) pump();
    pollfd p{shadowd.fd(), POLLIN, 0};
    if (::poll(&p, 1, pump ? 10 : 2000) == 1) {
      auto m = shadowd.recv();
      if (!m || !*m) return std::nullopt;
      return **m;
    }
    if (!pump) break;
  }
  return std::nullopt;
}

// The first message of `type` among the frontend's next five; `seen` gets
// every one before it.
inline std::optional<ctl::Msg> await_msg(ctl::Channel& shadowd, ctl::MsgType type, const Pump& pump = {},
                                         const std::function<void(const ctl::Msg&)>& seen = {}) {
  for (int i = 0; i < 5; ++i) {
    auto m = next_msg(shadowd, pump);
    if (!m) return std::nullopt;
    if (m->type == type) return m;
    if (seen) seen(*m);
  }
  return std::nullopt;
}

// kReconnect to backend domain `domid` for device `handle`; the frontend's
// kReconnected (on Xen, with the pool it granted that domain).
inline std::optional<ctl::Msg> reconnect(ctl::Channel& shadowd, uint32_t domid, uint64_t handle = 3,
                                         const Pump& pump = {},
                                         const std::function<void(const ctl::Msg&)>& seen = {}) {
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.a = domid;
  m.b = handle;
  EXPECT_TRUE(shadowd.send(m));
  return await_msg(shadowd, ctl::MsgType::kReconnected, pump, seen);
}

}  // namespace sd::front::test
