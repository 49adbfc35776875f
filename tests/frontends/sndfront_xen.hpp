// The vsnd beam splitter in Xen mode for tests: attached over a channel
// whose other end the test plays as shadowd, its pools in memory, pumped
// by the test as its player (or the dom0 proxy) pumps it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "fake_pools.hpp"
#include "fake_shadowd.hpp"
#include "vsnd/sndfront.hpp"

namespace sd::front {

class SndfrontXen : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ch = ctl::Channel::pair();
    ASSERT_TRUE(ch);
    shadowd_ = std::move(ch->first);
    ASSERT_TRUE(shadowd_.set_nonblocking(true));
    ctl::Msg att;
    att.type = ctl::MsgType::kDevAttach;
    att.b = 3;
    att.set_payload(sndif::StreamState{});
    ASSERT_TRUE(shadowd_.send(att));
    auto pools = std::make_unique<MemPools>(log_);
    pools_ = pools.get();
    auto f = Sndfront::attach(std::move(ch->second), std::move(pools));
    ASSERT_TRUE(f) << f.error().to_string();
    front_ = std::move(*f);
  }
  // kReconnect to backend `domid`, pumping the splitter until its
  // kReconnected (with the pool it granted that domain) arrives; the stream
  // it reports before that (shadowd cannot map its log on Xen) in reported_.
  std::optional<ctl::Msg> reconnect(uint32_t domid) {
    return test::reconnect(
        shadowd_, domid, 3, [this] { (void)front_->wait(10); },
        [this](const ctl::Msg& m) {
          if (m.type == ctl::MsgType::kDevConfig) reported_ = m.get_payload<sndif::StreamState>();
        });
  }

  std::optional<sndif::StreamState> reported_;  // the stream the last repair reported (kDevConfig)
  PoolLog log_;
  MemPools* pools_ = nullptr;
  ctl::Channel shadowd_;
  std::unique_ptr<Sndfront> front_;
};

}  // namespace sd::front
