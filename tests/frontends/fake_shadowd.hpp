// The test as shadowd on a frontend's control channel.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <cstdint>
#include <optional>

#include "sd/core/control_channel.hpp"

namespace sd::front::test {

// The frontend's next message (waits up to 2 s).
inline std::optional<ctl::Msg> next_msg(ctl::Channel& shadowd) {
  pollfd p{shadowd.fd(), POLLIN, 0};
  if (::poll(&p, 1, 2000) != 1) return std::nullopt;
  auto m = shadowd.recv();
  if (!m || !*m) return std::nullopt;
  return **m;
}

// The first message of `type` among the frontend's next five.
inline std::optional<ctl::Msg> await_msg(ctl::Channel& shadowd, ctl::MsgType type) {
  for (int i = 0; i < 5; ++i) {
    auto m = next_msg(shadowd);
    if (!m) return std::nullopt;
    if (m->type == type) return m;
  }
  return std::nullopt;
}

// kReconnect to backend domain `domid` for device `handle`; the frontend's
// kReconnected (on Xen, with the pool it granted that domain).
inline std::optional<ctl::Msg> reconnect(ctl::Channel& shadowd, uint32_t domid, uint64_t handle = 3) {
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.a = domid;
  m.b = handle;
  EXPECT_TRUE(shadowd.send(m));
  return await_msg(shadowd, ctl::MsgType::kReconnected);
}

}  // namespace sd::front::test
