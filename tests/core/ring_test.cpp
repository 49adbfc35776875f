// Unit tests for sd::ring::FrontRing / BackRing: the Xen ring protocol
// (indices, notification hold-off, wrap-around) and its hardening against a
// peer that writes anything into the shared page.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "guarded_area.hpp"
#include "ring_test_util.hpp"
#include "sdtest_traits.hpp"

namespace sdtest {
namespace {

using sd::Code;

// ---------------------------------------------------------------- attach

TEST(FrontRingAttach, OnePage_SizeMatchesXenConstRingSize) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());

  auto front = Front::attach(area.begin(), kPage, true);

  ASSERT_TRUE(front.has_value());
  EXPECT_EQ(front->size(), kEntriesPerPage);
  EXPECT_EQ(front->size(), 32u);
}

TEST(FrontRingAttach, OnePage_SizeMatchesXenRingSizeOnPointer) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  auto* s = static_cast<sdtest_sring*>(area.begin());

  auto front = Front::attach(area.begin(), kPage, true);

  ASSERT_TRUE(front.has_value());
  EXPECT_EQ(front->size(), static_cast<unsigned>(__RING_SIZE(s, kPage)));
}

TEST(FrontRingAttach, TwoPages_SizeDoubles) {
  GuardedArea area(2);
  ASSERT_TRUE(area.ok());

  auto front = Front::attach(area.begin(), 2 * kPage, true);

  ASSERT_TRUE(front.has_value());
  EXPECT_EQ(front->size(), static_cast<unsigned>(__CONST_RING_SIZE(sdtest, 2 * kPage)));
  EXPECT_EQ(front->size(), 64u);
}

TEST(FrontRingAttach, AreaSmallerThanHeaderPlusOneEntry_InvalidInput) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  constexpr size_t kTooSmall = offsetof(sdtest_sring, ring) + sizeof(sdtest_sring_entry) - 1;

  auto front = Front::attach(area.tail(kTooSmall + 1), kTooSmall, true);

  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error().code, Code::kInvalidInput);
  EXPECT_TRUE(contains(front.error().message, "too small"));
}

TEST(FrontRingAttach, HeaderPlusOneEntry_SizeOne) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  constexpr size_t kBytes = offsetof(sdtest_sring, ring) + sizeof(sdtest_sring_entry);

  auto front = Front::attach(area.tail(kBytes), kBytes, true);

  ASSERT_TRUE(front.has_value());
  EXPECT_EQ(front->size(), 1u);
}

TEST(FrontRingAttach, NullArea_InvalidInput) {
  auto front = Front::attach(nullptr, kPage, true);

  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error().code, Code::kInvalidInput);
}

TEST(FrontRingAttach, MisalignedArea_InvalidInput) {
  GuardedArea area(2);
  ASSERT_TRUE(area.ok());

  auto front = Front::attach(static_cast<std::byte*>(area.begin()) + 1, kPage, true);

  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error().code, Code::kInvalidInput);
}

TEST(FrontRingAttach, Init_HeaderLikeSharedRingInit) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  area.fill(0xab);
  const auto* s = static_cast<const sdtest_sring*>(area.begin());
  const std::vector<uint8_t> zero_pad(sizeof(s->__pad), 0);

  auto front = Front::attach(area.begin(), kPage, true);

  ASSERT_TRUE(front.has_value());
  EXPECT_EQ(s->req_prod, 0u);
  EXPECT_EQ(s->rsp_prod, 0u);
  EXPECT_EQ(s->req_event, 1u);
  EXPECT_EQ(s->rsp_event, 1u);
  EXPECT_EQ(std::memcmp(s->pvt.pvt_pad, zero_pad.data(), sizeof(s->pvt.pvt_pad)), 0);
  EXPECT_EQ(std::memcmp(s->__pad, zero_pad.data(), sizeof(s->__pad)), 0);
  EXPECT_EQ(front->req_prod_pvt(), 0u);
  EXPECT_EQ(front->rsp_cons(), 0u);
  EXPECT_EQ(front->free_requests(), kEntriesPerPage);
}

TEST(FrontRingAttach, NoInit_IndicesStartAtSharedReqProdAndHeaderUntouched) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  auto* s = static_cast<sdtest_sring*>(area.begin());
  s->req_prod = 1234;
  s->rsp_prod = 1234;
  s->req_event = 77;

  auto front = Front::attach(area.begin(), kPage, false);

  ASSERT_TRUE(front.has_value());
  EXPECT_EQ(front->req_prod_pvt(), 1234u);
  EXPECT_EQ(front->rsp_cons(), 1234u);
  EXPECT_EQ(s->req_event, 77u);
}

TEST(BackRingAttach, NoInit_IndicesStartAtSharedRspProd) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  auto* s = static_cast<sdtest_sring*>(area.begin());
  s->req_prod = 1240;
  s->rsp_prod = 1234;

  auto back = Back::attach(area.begin(), kPage, false);

  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->req_cons(), 1234u);
  EXPECT_EQ(back->rsp_prod_pvt(), 1234u);
}

TEST(BackRingAttach, Init_HeaderLikeSharedRingInit) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  area.fill(0xab);
  const auto* s = static_cast<const sdtest_sring*>(area.begin());

  auto back = Back::attach(area.begin(), kPage, true);

  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(s->req_prod, 0u);
  EXPECT_EQ(s->rsp_prod, 0u);
  EXPECT_EQ(s->req_event, 1u);
  EXPECT_EQ(s->rsp_event, 1u);
  EXPECT_EQ(back->size(), kEntriesPerPage);
}

TEST(BackRingAttach, AreaTooSmall_InvalidInput) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());

  auto back = Back::attach(area.tail(64), 64, false);

  ASSERT_FALSE(back.has_value());
  EXPECT_EQ(back.error().code, Code::kInvalidInput);
}

// ------------------------------------------------------------ round trip

using RingRoundTrip = RingPair;

TEST_F(RingRoundTrip, PutPushGet_RequestPayloadArrivesIntact) {
  const sdtest_request sent = sdtest_make_request(7, 47);
  ASSERT_TRUE(front().put_request(sent).has_value());
  front().push_requests();

  auto got = back().get_request();

  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(std::memcmp(&**got, &sent, sizeof(sent)), 0);
  EXPECT_EQ(back().req_cons(), 1u);
}

TEST_F(RingRoundTrip, PutResponsePush_FrontGetsResponseIntact) {
  const sdtest_request sent = sdtest_make_request(7, 47);
  ASSERT_TRUE(front().put_request(sent).has_value());
  front().push_requests();
  auto req = back().get_request();
  ASSERT_TRUE(req.has_value() && req->has_value());
  const sdtest_response answer = sdtest_answer(&**req);
  ASSERT_TRUE(back().put_response(answer).has_value());
  back().push_responses();

  auto got = front().get_response();

  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->id, 7u);
  EXPECT_EQ((*got)->status, SDTEST_STATUS_OK);
  EXPECT_EQ((*got)->checksum, sdtest_checksum(sent.data, sent.len));
  EXPECT_EQ(front().rsp_cons(), 1u);
  EXPECT_EQ(front().free_requests(), kEntriesPerPage);
}

TEST_F(RingRoundTrip, NothingPublished_GetResponseEmpty) {
  auto got = front().get_response();

  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->has_value());
}

TEST_F(RingRoundTrip, PutWithoutPush_BackendSeesNothing) {
  ASSERT_TRUE(front().put_request(request(1)).has_value());

  auto got = back().get_request();

  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(sring()->req_prod, 0u);
  EXPECT_EQ(front().free_requests(), kEntriesPerPage - 1);
}

TEST_F(RingRoundTrip, ResponsesNotPushed_FrontSeesNothing) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  auto req = back().get_request();
  ASSERT_TRUE(req.has_value() && req->has_value());
  ASSERT_TRUE(back().put_response(sdtest_answer(&**req)).has_value());

  auto got = front().get_response();

  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->has_value());
}

TEST_F(RingRoundTrip, ManyRequests_ResponsesInOrder) {
  ASSERT_TRUE(put_and_push(front(), 100, 20));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  std::vector<uint64_t> ids;

  ASSERT_TRUE(drain(front(), ids));

  EXPECT_EQ(served, 20u);
  EXPECT_EQ(ids, iota_ids(100, 20));
}

TEST_F(RingRoundTrip, RingFull_PutRequestRetry) {
  ASSERT_TRUE(put_only(front(), 0, kEntriesPerPage));

  auto put = front().put_request(request(99));

  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, Code::kRetry);
  EXPECT_EQ(front().free_requests(), 0u);
  EXPECT_EQ(front().req_prod_pvt(), kEntriesPerPage);
}

TEST_F(RingRoundTrip, FullRingAnswered_ResponseFreesSlots) {
  ASSERT_TRUE(put_and_push(front(), 0, kEntriesPerPage));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  std::vector<uint64_t> ids;
  ASSERT_TRUE(drain(front(), ids));

  auto put = front().put_request(request(99));

  EXPECT_TRUE(put.has_value());
  EXPECT_EQ(ids.size(), kEntriesPerPage);
  EXPECT_EQ(front().free_requests(), kEntriesPerPage - 1);
}

TEST_F(RingRoundTrip, NoRequestWaiting_PutResponseRetry) {
  auto put = back().put_response(response(1));

  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, Code::kRetry);
  EXPECT_EQ(back().rsp_prod_pvt(), 0u);
}

TEST_F(RingRoundTrip, EveryConsumedRequestAnswered_PutResponseRetry) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  auto req = back().get_request();
  ASSERT_TRUE(req.has_value() && req->has_value());
  ASSERT_TRUE(back().put_response(sdtest_answer(&**req)).has_value());

  auto put = back().put_response(response(2));

  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, Code::kRetry);
}

TEST_F(RingRoundTrip, Reset_HeaderAndIndicesBackToZero) {
  ASSERT_TRUE(put_and_push(front(), 0, 5));
  sring()->rsp_prod = 3;
  sring()->rsp_event = 9;

  front().reset();

  EXPECT_EQ(sring()->req_prod, 0u);
  EXPECT_EQ(sring()->rsp_prod, 0u);
  EXPECT_EQ(sring()->req_event, 1u);
  EXPECT_EQ(sring()->rsp_event, 1u);
  EXPECT_EQ(front().req_prod_pvt(), 0u);
  EXPECT_EQ(front().rsp_cons(), 0u);
  EXPECT_EQ(front().free_requests(), kEntriesPerPage);
}

TEST_F(RingRoundTrip, ResetThenNewBackend_ReplayedRequestsServed) {
  ASSERT_TRUE(put_and_push(front(), 0, 5));
  front().reset();
  auto fresh = Back::attach(area_.begin(), kPage, false);
  ASSERT_TRUE(fresh.has_value());
  ASSERT_TRUE(put_and_push(front(), 0, 5));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(*fresh, served));
  std::vector<uint64_t> ids;

  ASSERT_TRUE(drain(front(), ids));

  EXPECT_EQ(served, 5u);
  EXPECT_EQ(ids, iota_ids(0, 5));
}

// ----------------------------------------------------- notification rules

using RingNotify = RingPair;

TEST_F(RingNotify, PushRequests_FirstRequestAfterInit_Notifies) {
  ASSERT_TRUE(put_only(front(), 0, 1));

  const bool notify = front().push_requests();

  EXPECT_TRUE(notify);
}

TEST_F(RingNotify, PushRequests_BackendAlreadyNotifiedNotYetWaiting_NoNotify) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  ASSERT_TRUE(put_only(front(), 1, 1));

  const bool notify = front().push_requests();

  EXPECT_FALSE(notify);
}

TEST_F(RingNotify, PushRequests_AfterBackendFinalCheck_Notifies) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  auto req = back().get_request();
  ASSERT_TRUE(req.has_value() && req->has_value());
  ASSERT_FALSE(back().final_check_for_requests());
  ASSERT_TRUE(put_only(front(), 1, 1));

  const bool notify = front().push_requests();

  EXPECT_TRUE(notify);
}

TEST_F(RingNotify, PushRequests_NothingNew_NoNotify) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  sring()->req_event = 1;

  const bool notify = front().push_requests();

  EXPECT_FALSE(notify);
}

TEST_F(RingNotify, PushRequests_EventInsideBatch_Notifies) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));
  sring()->req_event = 5;
  ASSERT_TRUE(put_only(front(), 2, 5));

  const bool notify = front().push_requests();

  EXPECT_TRUE(notify);
}

TEST_F(RingNotify, PushRequests_EventBeyondBatch_NoNotify) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));
  sring()->req_event = 10;
  ASSERT_TRUE(put_only(front(), 2, 5));

  const bool notify = front().push_requests();

  EXPECT_FALSE(notify);
}

TEST_F(RingNotify, PushRequests_OldProducerTakenFromOwnStateNotPage_NoNotify) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  ASSERT_TRUE(put_only(front(), 1, 1));
  sring()->req_prod = 0xdead0000u;  // a backend scribbling on our index

  const bool notify = front().push_requests();

  EXPECT_FALSE(notify);
  EXPECT_EQ(sring()->req_prod, 2u);
}

TEST_F(RingNotify, PushResponses_FirstResponse_Notifies) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  auto req = back().get_request();
  ASSERT_TRUE(req.has_value() && req->has_value());
  ASSERT_TRUE(back().put_response(sdtest_answer(&**req)).has_value());

  const bool notify = back().push_responses();

  EXPECT_TRUE(notify);
}

TEST_F(RingNotify, PushResponses_FrontendNotWaiting_NoNotify) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  ASSERT_TRUE(put_and_push(front(), 2, 1));
  auto req = back().get_request();
  ASSERT_TRUE(req.has_value() && req->has_value());
  ASSERT_TRUE(back().put_response(sdtest_answer(&**req)).has_value());

  const bool notify = back().push_responses();

  EXPECT_FALSE(notify);
}

TEST_F(RingNotify, PushResponses_AfterFrontendFinalCheck_Notifies) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  std::vector<uint64_t> ids;
  ASSERT_TRUE(drain(front(), ids));
  ASSERT_FALSE(front().final_check_for_responses());
  ASSERT_TRUE(put_and_push(front(), 2, 1));
  auto req = back().get_request();
  ASSERT_TRUE(req.has_value() && req->has_value());
  ASSERT_TRUE(back().put_response(sdtest_answer(&**req)).has_value());

  const bool notify = back().push_responses();

  EXPECT_TRUE(notify);
}

TEST_F(RingNotify, FinalCheckForResponses_NothingPending_SetsRspEventReturnsFalse) {
  ASSERT_TRUE(put_and_push(front(), 0, 3));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  std::vector<uint64_t> ids;
  ASSERT_TRUE(drain(front(), ids));

  const bool pending = front().final_check_for_responses();

  EXPECT_FALSE(pending);
  EXPECT_EQ(sring()->rsp_event, 4u);
}

TEST_F(RingNotify, FinalCheckForResponses_ResponsePending_TrueAndRspEventUnchanged) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  sring()->rsp_event = 1;

  const bool pending = front().final_check_for_responses();

  EXPECT_TRUE(pending);
  EXPECT_EQ(sring()->rsp_event, 1u);
}

TEST_F(RingNotify, FinalCheckForRequests_NothingPending_SetsReqEventReturnsFalse) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));

  const bool pending = back().final_check_for_requests();

  EXPECT_FALSE(pending);
  EXPECT_EQ(sring()->req_event, 3u);
}

TEST_F(RingNotify, FinalCheckForRequests_RequestPending_True) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));

  const bool pending = back().final_check_for_requests();

  EXPECT_TRUE(pending);
  EXPECT_EQ(sring()->req_event, 1u);
}

// next_request() drains what was published and leaves req_event armed, so
// the frontend's next push notifies.
TEST_F(RingNotify, NextRequest_DrainsThenArmsReqEvent_NextPushNotifies) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));

  auto a = back().next_request();
  auto b = back().next_request();
  auto none = back().next_request();

  ASSERT_TRUE(a && *a && b && *b && none);
  EXPECT_EQ((*a)->id, 0u);
  EXPECT_EQ((*b)->id, 1u);
  EXPECT_FALSE(*none);
  EXPECT_EQ(sring()->req_event, 3u);
  ASSERT_TRUE(put_only(front(), 2, 1));
  EXPECT_TRUE(front().push_requests());
}

// ---------------------------------------------------- index wrap-around

using RingWrap = RingPair;

TEST_F(RingWrap, IndicesNearUint32Max_RoundTripWrapsToSmallIndices) {
  restart_at(UINT32_MAX - 2);
  ASSERT_TRUE(put_and_push(front(), 0, 5));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  std::vector<uint64_t> ids;

  ASSERT_TRUE(drain(front(), ids));

  EXPECT_EQ(ids, iota_ids(0, 5));
  EXPECT_EQ(front().rsp_cons(), 2u);
  EXPECT_EQ(front().req_prod_pvt(), 2u);
  EXPECT_EQ(back().req_cons(), 2u);
  EXPECT_EQ(back().rsp_prod_pvt(), 2u);
  EXPECT_EQ(sring()->rsp_prod, 2u);
}

TEST_F(RingWrap, IndicesNearUint32Max_FullRingStillRetry) {
  restart_at(UINT32_MAX - 5);
  ASSERT_TRUE(put_only(front(), 0, kEntriesPerPage));

  auto put = front().put_request(request(99));

  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, Code::kRetry);
  EXPECT_EQ(front().free_requests(), 0u);
}

TEST_F(RingWrap, IndicesNearUint32Max_FullRingServedAcrossWrap) {
  restart_at(UINT32_MAX - 10);
  ASSERT_TRUE(put_and_push(front(), 0, kEntriesPerPage));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  std::vector<uint64_t> ids;

  ASSERT_TRUE(drain(front(), ids));

  EXPECT_EQ(served, kEntriesPerPage);
  EXPECT_EQ(ids, iota_ids(0, kEntriesPerPage));
  EXPECT_EQ(front().free_requests(), kEntriesPerPage);
}

TEST_F(RingWrap, WrappedIndices_RspProdBeyondPublished_RestartReplay) {
  restart_at(UINT32_MAX - 1);
  ASSERT_TRUE(put_and_push(front(), 0, 3));
  sring()->rsp_prod = UINT32_MAX - 1 + 4;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(RingWrap, WrappedIndices_ReqProdTooFarAhead_InvalidInput) {
  restart_at(UINT32_MAX - 1);
  sring()->req_prod = UINT32_MAX - 1 + kEntriesPerPage + 1;

  auto got = back().get_request();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kInvalidInput);
}

TEST_F(RingWrap, PushRequestsAcrossWrap_EventJustAfterWrap_Notifies) {
  restart_at(UINT32_MAX);
  sring()->req_event = 0;  // UINT32_MAX + 1
  ASSERT_TRUE(put_only(front(), 0, 2));

  const bool notify = front().push_requests();

  EXPECT_TRUE(notify);
}

TEST_F(RingWrap, FinalCheckForResponsesAtMax_RspEventWrapsToZero) {
  restart_at(UINT32_MAX);

  const bool pending = front().final_check_for_responses();

  EXPECT_FALSE(pending);
  EXPECT_EQ(sring()->rsp_event, 0u);
}

// ----------------------------------------------------- hostile backend

using HostileBackend = RingPair;

TEST_F(HostileBackend, RspProdBeyondPublishedReqProd_RestartReplay) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  sring()->rsp_prod = 2;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
  EXPECT_TRUE(contains(got.error().message, "rsp_prod=2"));
  EXPECT_TRUE(contains(got.error().message, "req_prod=1"));
}

TEST_F(HostileBackend, RspProdWithNothingPublished_RestartReplay) {
  sring()->rsp_prod = 1;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(HostileBackend, RspProdFarAhead_RestartReplay) {
  ASSERT_TRUE(put_and_push(front(), 0, 4));
  sring()->rsp_prod = 0x80000000u;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(HostileBackend, RspProdMaxValue_RestartReplay) {
  ASSERT_TRUE(put_and_push(front(), 0, 4));
  sring()->rsp_prod = UINT32_MAX;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(HostileBackend, RspProdBehindRspCons_RestartReplay) {
  ASSERT_TRUE(put_and_push(front(), 0, 3));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  std::vector<uint64_t> ids;
  ASSERT_TRUE(drain(front(), ids));
  sring()->rsp_prod = 1;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(HostileBackend, RspProdCoversPutButUnpublishedRequest_RestartReplay) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));
  ASSERT_TRUE(put_only(front(), 2, 1));
  sring()->rsp_prod = 3;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(HostileBackend, HostileRspProd_FrontStateUnchanged) {
  ASSERT_TRUE(put_and_push(front(), 0, 2));
  sring()->rsp_prod = 0x40000000u;

  auto got = front().get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(front().rsp_cons(), 0u);
  EXPECT_EQ(front().req_prod_pvt(), 2u);
  EXPECT_EQ(front().free_requests(), kEntriesPerPage - 2);
}

TEST_F(HostileBackend, SlotRewrittenAfterGetResponse_ReturnedCopyUnchanged) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  auto got = front().get_response();
  ASSERT_TRUE(got.has_value() && got->has_value());
  const sdtest_response expected = response(0);

  std::memset(&slot(0), 0x5a, sizeof(sdtest_sring_entry));

  EXPECT_EQ(std::memcmp(&**got, &expected, sizeof(expected)), 0);
}

TEST_F(HostileBackend, GarbageInSlot_CopiedVerbatimNotInterpreted) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  std::memset(&slot(0), 0xff, sizeof(sdtest_sring_entry));
  sring()->rsp_prod = 1;

  auto got = front().get_response();

  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->id, UINT64_MAX);
  EXPECT_EQ((*got)->checksum, UINT32_MAX);
}

TEST_F(HostileBackend, FinalCheckWithHostileRspProd_ReportsPendingThenGetFails) {
  ASSERT_TRUE(put_and_push(front(), 0, 1));
  sring()->rsp_prod = 1000;

  const bool pending = front().final_check_for_responses();
  auto got = front().get_response();

  EXPECT_TRUE(pending);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

// ----------------------------------------- checked responses (ids)

using CheckedResponse = RingPair;

TEST_F(CheckedResponse, KnownId_ReturnedAndCompleted) {
  sd::ring::IdTable ids(kEntriesPerPage);
  ASSERT_TRUE(sd::ring::put_checked_request(front(), ids, request(5)).has_value());
  front().push_requests();
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));

  auto got = sd::ring::get_checked_response(front(), ids);

  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->id, 5u);
  EXPECT_FALSE(ids.in_flight(5));
  EXPECT_EQ(ids.count(), 0u);
}

TEST_F(CheckedResponse, NothingNew_Empty) {
  sd::ring::IdTable ids(kEntriesPerPage);

  auto got = sd::ring::get_checked_response(front(), ids);

  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->has_value());
}

TEST_F(CheckedResponse, UnknownId_RestartReplay) {
  sd::ring::IdTable ids(kEntriesPerPage);
  ASSERT_TRUE(sd::ring::put_checked_request(front(), ids, request(5)).has_value());
  front().push_requests();
  slot(0).rsp = response(6);
  sring()->rsp_prod = 1;

  auto got = sd::ring::get_checked_response(front(), ids);

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
  EXPECT_TRUE(ids.in_flight(5));
}

TEST_F(CheckedResponse, DuplicateResponse_SecondIsRestartReplay) {
  sd::ring::IdTable ids(kEntriesPerPage);
  ASSERT_TRUE(sd::ring::put_checked_request(front(), ids, request(3)).has_value());
  ASSERT_TRUE(sd::ring::put_checked_request(front(), ids, request(4)).has_value());
  front().push_requests();
  slot(0).rsp = response(3);
  slot(1).rsp = response(3);
  sring()->rsp_prod = 2;
  auto first = sd::ring::get_checked_response(front(), ids);
  ASSERT_TRUE(first.has_value() && first->has_value());

  auto second = sd::ring::get_checked_response(front(), ids);

  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, Code::kRestartReplay);
  EXPECT_TRUE(contains(second.error().message, "not in flight"));
}

TEST_F(CheckedResponse, IdOutOfRange_RestartReplay) {
  sd::ring::IdTable ids(kEntriesPerPage);
  ASSERT_TRUE(sd::ring::put_checked_request(front(), ids, request(0)).has_value());
  front().push_requests();
  slot(0).rsp = response(0);
  slot(0).rsp.id = 1ull << 40;
  sring()->rsp_prod = 1;

  auto got = sd::ring::get_checked_response(front(), ids);

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
  EXPECT_TRUE(contains(got.error().message, "out of range"));
}

TEST_F(CheckedResponse, HostileRspProd_RingErrorPassedThrough) {
  sd::ring::IdTable ids(kEntriesPerPage);
  sring()->rsp_prod = 7;

  auto got = sd::ring::get_checked_response(front(), ids);

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(CheckedResponse, PutCheckedRequestRingFull_RetryAndIdNotClaimed) {
  sd::ring::IdTable ids(64);
  ASSERT_TRUE(put_only(front(), 0, kEntriesPerPage));

  auto put = sd::ring::put_checked_request(front(), ids, request(40));

  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, Code::kRetry);
  EXPECT_FALSE(ids.in_flight(40));
}

TEST_F(CheckedResponse, PutCheckedRequestIdInFlight_EscalateAndNothingPut) {
  sd::ring::IdTable ids(kEntriesPerPage);
  ASSERT_TRUE(ids.claim(2).has_value());

  auto put = sd::ring::put_checked_request(front(), ids, request(2));

  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, Code::kEscalate);
  EXPECT_EQ(front().req_prod_pvt(), 0u);
}

// ----------------------------------------------------- hostile frontend

using HostileFrontend = RingPair;

TEST_F(HostileFrontend, ReqProdOneBeyondRingSize_InvalidInput) {
  sring()->req_prod = kEntriesPerPage + 1;

  auto got = back().get_request();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kInvalidInput);
  EXPECT_TRUE(contains(got.error().message, "req_prod"));
  EXPECT_EQ(back().req_cons(), 0u);
}

TEST_F(HostileFrontend, ReqProdExactlyRingSize_Accepted) {
  sring()->req_prod = kEntriesPerPage;

  auto got = back().get_request();

  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->has_value());
}

TEST_F(HostileFrontend, ReqProdHuge_InvalidInput) {
  sring()->req_prod = 0xfffffff0u;

  auto got = back().get_request();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kInvalidInput);
}

TEST_F(HostileFrontend, ReqProdBehindReqCons_InvalidInput) {
  ASSERT_TRUE(put_and_push(front(), 0, 3));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(back(), served));
  sring()->req_prod = 1;

  auto got = back().get_request();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kInvalidInput);
}

TEST_F(HostileFrontend, MoreRequestsThanFreeSlots_InvalidInput) {
  ASSERT_TRUE(put_and_push(front(), 0, 4));
  auto consumed = back().get_request();
  ASSERT_TRUE(consumed.has_value() && consumed->has_value());
  // One request consumed but not answered: its slot is ours, so at most
  // size requests can lie beyond rsp_prod_pvt=0.
  sring()->req_prod = kEntriesPerPage + 1;

  auto got = back().get_request();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kInvalidInput);
}

TEST_F(HostileFrontend, SlotRewrittenAfterGetRequest_ReturnedCopyUnchanged) {
  const sdtest_request sent = sdtest_make_request(9, 44);
  ASSERT_TRUE(front().put_request(sent).has_value());
  front().push_requests();
  auto got = back().get_request();
  ASSERT_TRUE(got.has_value() && got->has_value());

  std::memset(&slot(0), 0xa5, sizeof(sdtest_sring_entry));

  EXPECT_EQ(std::memcmp(&**got, &sent, sizeof(sent)), 0);
}

TEST_F(HostileFrontend, BadLengthInRequest_AnsweredWithError) {
  sdtest_request sent = sdtest_make_request(9, 44);
  sent.len = 4096;
  ASSERT_TRUE(front().put_request(sent).has_value());
  front().push_requests();
  auto got = back().get_request();
  ASSERT_TRUE(got.has_value() && got->has_value());

  const sdtest_response rsp = sdtest_answer(&**got);

  EXPECT_EQ(rsp.status, SDTEST_STATUS_BAD_REQUEST);
}

// ------------------------------------------- nothing read beyond the area

// A ring whose last entry ends exactly where the guard page begins.
class RingAtGuard : public testing::Test {
 protected:
  static constexpr size_t kBytes =
      offsetof(sdtest_sring, ring) + kEntriesPerPage * sizeof(sdtest_sring_entry);

  void SetUp() override {
    ASSERT_TRUE(area_.ok());
    auto front = Front::attach(area_.tail(kBytes), kBytes, true);
    ASSERT_TRUE(front.has_value()) << front.error().to_string();
    auto back = Back::attach(area_.tail(kBytes), kBytes, false);
    ASSERT_TRUE(back.has_value()) << back.error().to_string();
    front_.emplace(std::move(*front));
    back_.emplace(std::move(*back));
  }
  sdtest_sring* sring() const { return static_cast<sdtest_sring*>(area_.tail(kBytes)); }

  GuardedArea area_{1};
  std::optional<Front> front_;
  std::optional<Back> back_;
};

TEST_F(RingAtGuard, Attach_SizeUsesEveryByteUpToGuard) {
  EXPECT_EQ(front_->size(), kEntriesPerPage);
  EXPECT_EQ(reinterpret_cast<std::byte*>(&sring()->ring[0]) +
                kEntriesPerPage * sizeof(sdtest_sring_entry),
            static_cast<std::byte*>(area_.begin()) + kPage);
}

TEST_F(RingAtGuard, FullRingAcrossIndexWrap_EverySlotTouchedNoFault) {
  sring()->req_prod = UINT32_MAX - 3;
  sring()->rsp_prod = UINT32_MAX - 3;
  auto front = Front::attach(area_.tail(kBytes), kBytes, false);
  auto back = Back::attach(area_.tail(kBytes), kBytes, false);
  ASSERT_TRUE(front.has_value() && back.has_value());
  ASSERT_TRUE(put_and_push(*front, 0, kEntriesPerPage));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(*back, served));
  std::vector<uint64_t> ids;

  ASSERT_TRUE(drain(*front, ids));

  EXPECT_EQ(served, kEntriesPerPage);
  EXPECT_EQ(ids, iota_ids(0, kEntriesPerPage));
}

TEST_F(RingAtGuard, HostileFarAheadRspProd_ErrorNoFault) {
  ASSERT_TRUE(put_and_push(*front_, 0, kEntriesPerPage));
  sring()->rsp_prod = kEntriesPerPage * 1000 + 17;

  auto got = front_->get_response();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kRestartReplay);
}

TEST_F(RingAtGuard, HostileFarAheadReqProd_ErrorNoFault) {
  sring()->req_prod = kEntriesPerPage * 1000 + 17;

  auto got = back_->get_request();

  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Code::kInvalidInput);
}

TEST(RingOnePageWithGuard, WholePageRingFilledAndDrained_NoFault) {
  GuardedArea area(1);
  ASSERT_TRUE(area.ok());
  auto front = Front::attach(area.begin(), kPage, true);
  auto back = Back::attach(area.begin(), kPage, false);
  ASSERT_TRUE(front.has_value() && back.has_value());
  ASSERT_TRUE(put_and_push(*front, 0, kEntriesPerPage));
  unsigned served = 0;
  ASSERT_TRUE(serve_all(*back, served));
  std::vector<uint64_t> ids;

  ASSERT_TRUE(drain(*front, ids));

  EXPECT_EQ(ids, iota_ids(0, kEntriesPerPage));
}

}  // namespace
}  // namespace sdtest
