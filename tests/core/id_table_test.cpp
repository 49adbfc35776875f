// Unit tests for sd::ring::IdTable: the frontend's record of ids in flight.
#include <gtest/gtest.h>

#include <cstdint>

#include "sd/core/ring.hpp"

namespace {

using sd::Code;
using sd::ring::IdTable;

testing::AssertionResult claim_all(IdTable& ids) {
  for (uint64_t id = 0; id < ids.capacity(); ++id) {
    auto claimed = ids.claim(id);
    if (!claimed) return testing::AssertionFailure() << claimed.error().to_string();
  }
  return testing::AssertionSuccess();
}

TEST(IdTable, ClaimFreshId_InFlight) {
  IdTable ids(8);

  auto claimed = ids.claim(3);

  EXPECT_TRUE(claimed.has_value());
  EXPECT_TRUE(ids.in_flight(3));
  EXPECT_EQ(ids.count(), 1u);
}

TEST(IdTable, ClaimTwice_Escalate) {
  IdTable ids(8);
  ASSERT_TRUE(ids.claim(3).has_value());

  auto again = ids.claim(3);

  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Code::kEscalate);
  EXPECT_EQ(ids.count(), 1u);
}

TEST(IdTable, ClaimOutOfRange_Escalate) {
  IdTable ids(8);

  auto claimed = ids.claim(8);

  ASSERT_FALSE(claimed.has_value());
  EXPECT_EQ(claimed.error().code, Code::kEscalate);
  EXPECT_EQ(ids.count(), 0u);
}

TEST(IdTable, CompleteClaimedId_NoLongerInFlight) {
  IdTable ids(8);
  ASSERT_TRUE(ids.claim(5).has_value());

  auto done = ids.complete(5);

  EXPECT_TRUE(done.has_value());
  EXPECT_FALSE(ids.in_flight(5));
  EXPECT_EQ(ids.count(), 0u);
}

TEST(IdTable, CompleteUnknownId_RestartReplay) {
  IdTable ids(8);

  auto done = ids.complete(2);

  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, Code::kRestartReplay);
}

TEST(IdTable, CompleteTwice_RestartReplay) {
  IdTable ids(8);
  ASSERT_TRUE(ids.claim(5).has_value());
  ASSERT_TRUE(ids.complete(5).has_value());

  auto again = ids.complete(5);

  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Code::kRestartReplay);
  EXPECT_EQ(ids.count(), 0u);
}

TEST(IdTable, CompleteOutOfRange_RestartReplay) {
  IdTable ids(8);

  auto done = ids.complete(UINT64_MAX);

  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, Code::kRestartReplay);
}

TEST(IdTable, InFlightOutOfRange_False) {
  IdTable ids(8);

  const bool in_flight = ids.in_flight(1000);

  EXPECT_FALSE(in_flight);
}

TEST(IdTable, AllocateEmptyTable_ReturnsClaimedId) {
  IdTable ids(8);

  auto id = ids.allocate();

  ASSERT_TRUE(id.has_value());
  EXPECT_LT(*id, 8u);
  EXPECT_TRUE(ids.in_flight(*id));
  EXPECT_EQ(ids.count(), 1u);
}

TEST(IdTable, AllocateTwice_DistinctIds) {
  IdTable ids(8);

  auto first = ids.allocate();
  auto second = ids.allocate();

  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_NE(*first, *second);
}

TEST(IdTable, AllocateAllInFlight_Nullopt) {
  IdTable ids(4);
  ASSERT_TRUE(claim_all(ids));

  auto id = ids.allocate();

  EXPECT_FALSE(id.has_value());
}

TEST(IdTable, AllocateSkipsClaimedIds_ReturnsFreeOne) {
  IdTable ids(4);
  ASSERT_TRUE(claim_all(ids));
  ASSERT_TRUE(ids.complete(2).has_value());

  auto id = ids.allocate();

  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(*id, 2u);
}

TEST(IdTable, AllocateAfterComplete_RoundRobinDoesNotReuseAtOnce) {
  IdTable ids(4);
  auto first = ids.allocate();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(ids.complete(*first).has_value());

  auto next = ids.allocate();

  ASSERT_TRUE(next.has_value());
  EXPECT_NE(*next, *first);
}

TEST(IdTable, ZeroCapacity_AllocateNullopt) {
  IdTable ids(0);

  auto id = ids.allocate();

  EXPECT_FALSE(id.has_value());
}

TEST(IdTable, ClearAfterClaims_NothingInFlight) {
  IdTable ids(4);
  ASSERT_TRUE(claim_all(ids));

  ids.clear();

  EXPECT_EQ(ids.count(), 0u);
  EXPECT_FALSE(ids.in_flight(0));
  EXPECT_TRUE(ids.claim(0).has_value());
}

}  // namespace
