// The splitter log: what the frontend records is what recovery replays.
#include "sd/core/splitter_log.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include <unistd.h>

#include "sd/core/netif.hpp"

namespace {

using sd::shadow::SplitterLog;

netif_tx_request tx(uint16_t id) { return netif_tx_request{2u + id, 0, 0, id, 60}; }

TEST(SplitterLog, Recorded_ShowsAsInflightWithCopy) {
  auto log = SplitterLog::create(8);
  ASSERT_TRUE(log.has_value());
  auto req = tx(3);

  log->record(3, 0, &req, sizeof(req));

  auto in = log->inflight(0);
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].slot, 3u);
  EXPECT_EQ(in[0].len, sizeof(req));
  EXPECT_EQ(std::memcmp(in[0].req, &req, sizeof(req)), 0);
}

TEST(SplitterLog, Completed_NoLongerInflight) {
  auto log = SplitterLog::create(8);
  ASSERT_TRUE(log.has_value());
  auto req = tx(1);
  log->record(1, 0, &req, sizeof(req));

  log->complete(1);

  EXPECT_TRUE(log->inflight(0).empty());
  EXPECT_EQ(log->count(0), 0u);
}

TEST(SplitterLog, Inflight_InSubmissionOrderNotSlotOrder) {
  auto log = SplitterLog::create(8);
  ASSERT_TRUE(log.has_value());
  auto a = tx(5), b = tx(2), c = tx(7);
  log->record(5, 0, &a, sizeof(a));
  log->record(2, 0, &b, sizeof(b));
  log->record(7, 0, &c, sizeof(c));

  auto in = log->inflight(0);

  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[0].slot, 5u);
  EXPECT_EQ(in[1].slot, 2u);
  EXPECT_EQ(in[2].slot, 7u);
}

TEST(SplitterLog, OtherRing_NotMixedIn) {
  auto log = SplitterLog::create(8);
  ASSERT_TRUE(log.has_value());
  auto a = tx(0);
  log->record(0, 0, &a, sizeof(a));
  log->record(4, 1, &a, sizeof(a));

  EXPECT_EQ(log->inflight(0).size(), 1u);
  EXPECT_EQ(log->inflight(1).size(), 1u);
}

TEST(SplitterLog, SlotOutOfRange_Ignored) {
  auto log = SplitterLog::create(4);
  ASSERT_TRUE(log.has_value());
  auto a = tx(0);

  log->record(4, 0, &a, sizeof(a));
  log->complete(99);

  EXPECT_TRUE(log->inflight(0).empty());
}

TEST(SplitterLog, Disabled_RecordsNothing) {
  auto log = SplitterLog::create(4);
  ASSERT_TRUE(log.has_value());
  log->set_enabled(false);
  auto a = tx(0);

  log->record(0, 0, &a, sizeof(a));

  EXPECT_TRUE(log->inflight(0).empty());
}

// The progress watchdog's view: how long requests have waited with no
// response, and the ring's recent service time.
TEST(SplitterLog, Idle_NothingWaiting_Zero) {
  auto log = SplitterLog::create(8);
  ASSERT_TRUE(log.has_value());

  auto idle = log->idle(0, 0);

  EXPECT_EQ(idle.waiting_ms, 0.0);
  EXPECT_EQ(idle.service_ms, 0.0);
}

TEST(SplitterLog, Idle_WaitingCountsFromTheLaterOfOldestRequestAndLastResponse) {
  auto log = SplitterLog::create(8);
  ASSERT_TRUE(log.has_value());
  auto a = tx(1), b = tx(2);
  log->record(1, 0, &a, sizeof(a));
  usleep(30000);
  log->record(2, 0, &b, sizeof(b));
  usleep(20000);

  double before = log->idle(0, 0).waiting_ms;
  log->complete(1);  // a response: the ring moved, b waits from now on
  auto after = log->idle(0, 0);

  EXPECT_GE(before, 50.0);
  EXPECT_LT(after.waiting_ms, 20.0);
  EXPECT_GE(after.service_ms, 50.0) << "a waited ~50 ms: the ring's recent service time";
  EXPECT_EQ(log->idle(1, 0).waiting_ms, 0.0) << "another ring's requests do not count";
}

// A log with request 1 on `ring`, posted `wait_us` ago.
SplitterLog one_waiting(uint16_t ring, useconds_t wait_us) {
  auto log = SplitterLog::create(8);
  EXPECT_TRUE(log.has_value());
  auto a = tx(1);
  log->record(1, ring, &a, sizeof(a));
  usleep(wait_us);
  return std::move(*log);
}

TEST(SplitterLog, ServiceTime_RequestsFromBeforeTheBackendTookTheRing_NoSample) {
  auto log = one_waiting(0, 30000);  // waiting for a backend

  log.set_serving_since(sd::shadow::now_ns());
  log.complete(1);

  EXPECT_EQ(log.idle(0, 0).service_ms, 0.0) << "the wait for the backend is not its service time";
}

TEST(SplitterLog, Idle_SinceLimitsTheWait) {
  auto log = one_waiting(0, 30000);

  auto idle = log.idle(0, sd::shadow::now_ns());
  auto all = log.idle(0, 0);

  EXPECT_LT(idle.waiting_ms, 10.0) << "a backend is not held to requests from before `since`";
  EXPECT_LT(idle.oldest_ms, 10.0);
  EXPECT_GE(all.oldest_ms, 30.0);
}

// A ring beyond the header's progress stamps: nothing read or written
// there, the request still tracked.
TEST(SplitterLog, Idle_OutOfRangeRing_Zero) {
  auto log = one_waiting(7, 2000);

  auto idle = log.idle(7, 0);
  log.complete(1);

  EXPECT_EQ(idle.waiting_ms, 0.0);
  EXPECT_EQ(idle.oldest_ms, 0.0);
  EXPECT_TRUE(log.inflight(7).empty());
}

TEST(SplitterLog, ConfigManyChanges_ReplaysNewestOnly) {
  auto log = SplitterLog::create(4);
  ASSERT_TRUE(log.has_value());
  sd::netif::VifConfig c{};
  c.mtu = 1500;
  log->set_config(&c, sizeof(c));
  c.mtu = 1400;
  c.generation = 2;
  log->set_config(&c, sizeof(c));

  sd::netif::VifConfig got{};
  size_t n = log->get_config(&got, sizeof(got));

  EXPECT_EQ(n, sizeof(got));
  EXPECT_EQ(got.mtu, 1400);
  EXPECT_EQ(got.generation, 2u);
}

TEST(SplitterLog, SecondMapping_SeesFrontendWrites) {
  auto log = SplitterLog::create(8);
  ASSERT_TRUE(log.has_value());
  auto other = SplitterLog::map(sd::UniqueFd(::dup(log->fd())), 8);
  ASSERT_TRUE(other.has_value());
  auto a = tx(6);

  log->record(6, 0, &a, sizeof(a));

  ASSERT_EQ(other->inflight(0).size(), 1u);
  EXPECT_EQ(other->inflight(0)[0].slot, 6u);
}

TEST(VifConfig, Accepts_OwnMacBroadcastNotOthers) {
  sd::netif::VifConfig c{};
  const uint8_t mac[6] = {0x00, 0x16, 0x3e, 0, 0, 1}, other[6] = {0x00, 0x16, 0x3e, 0, 0, 2},
                bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  std::memcpy(c.mac, mac, 6);

  EXPECT_TRUE(sd::netif::accepts(c, mac));
  EXPECT_TRUE(sd::netif::accepts(c, bcast));
  EXPECT_FALSE(sd::netif::accepts(c, other));
}

TEST(VifConfig, Promisc_AcceptsAnyone) {
  sd::netif::VifConfig c{};
  const uint8_t other[6] = {0x00, 0x16, 0x3e, 0, 0, 2};
  c.promisc = 1;

  EXPECT_TRUE(sd::netif::accepts(c, other));
}

}  // namespace
