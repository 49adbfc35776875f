// blkif checks (what a backend may execute, what a frontend may believe) and
// the frontend's in-flight table (blk_shadow): exactly-once completion,
// unknown and duplicate responses, submission order for replay.
#include <gtest/gtest.h>

#include "sd/core/blkif.hpp"

namespace {

using namespace sd;

blkif_request rw(uint8_t op, uint64_t id, uint64_t sector, unsigned pages) {
  blkif_request r{};
  r.operation = op;
  r.id = id;
  r.sector_number = sector;
  r.nr_segments = static_cast<uint8_t>(pages);
  for (unsigned i = 0; i < pages; ++i) r.seg[i] = {blkif::data_ref(id, i), 0, 7};
  return r;
}

blkif_response answer(const blkif_request& r, int16_t status = BLKIF_RSP_OKAY) {
  blkif_response a{};
  a.id = r.id;
  a.operation = r.operation;
  a.status = status;
  return a;
}

constexpr uint64_t kDisk = 1024;  // sectors

TEST(BlkifCheck, WriteInsideDiskWithItsOwnPages_Accepted) {
  EXPECT_EQ(blkif::check_request(rw(BLKIF_OP_WRITE, 3, kDisk - 16, 2), kDisk), "");
}

TEST(BlkifCheck, SectorsBeyondTheDisk_Refused) {
  EXPECT_NE(blkif::check_request(rw(BLKIF_OP_READ, 0, kDisk - 8, 2), kDisk).find("outside the 1024-sector disk"),
            std::string::npos);
}

TEST(BlkifCheck, SectorNumberNearWrap_Refused) {
  EXPECT_NE(blkif::check_request(rw(BLKIF_OP_READ, 0, ~0ULL - 2, 1), kDisk), "");
}

TEST(BlkifCheck, SegmentNamingAnotherIdsPage_Refused) {
  auto r = rw(BLKIF_OP_WRITE, 1, 0, 1);
  r.seg[0].gref = blkif::data_ref(2, 0);
  EXPECT_NE(blkif::check_request(r, kDisk).find("is not a data page of id 1"), std::string::npos);
}

TEST(BlkifCheck, SegmentSectorsOutsideItsPage_Refused) {
  auto r = rw(BLKIF_OP_WRITE, 1, 0, 1);
  r.seg[0].last_sect = 8;
  EXPECT_NE(blkif::check_request(r, kDisk).find("outside its page"), std::string::npos);
  r.seg[0] = {blkif::data_ref(1, 0), 5, 4};
  EXPECT_NE(blkif::check_request(r, kDisk).find("outside its page"), std::string::npos);
}

TEST(BlkifCheck, TooManyOrNoSegments_Refused) {
  auto r = rw(BLKIF_OP_READ, 1, 0, 1);
  r.nr_segments = blkif::kSegs + 1;
  EXPECT_NE(blkif::check_request(r, kDisk).find("nr_segments"), std::string::npos);
  r.nr_segments = 0;
  EXPECT_NE(blkif::check_request(r, kDisk).find("nr_segments"), std::string::npos);
}

TEST(BlkifCheck, FlushCarryingData_RefusedNotFlushedWithoutIt) {
  blkif_request r{};
  r.operation = BLKIF_OP_FLUSH_DISKCACHE;
  EXPECT_EQ(blkif::check_request(r, kDisk), "");
  r = rw(BLKIF_OP_WRITE, 1, 0, 1);
  r.operation = BLKIF_OP_FLUSH_DISKCACHE;
  EXPECT_NE(blkif::check_request(r, kDisk).find("flush with 1 data segments"), std::string::npos);
}

TEST(BlkifCheck, IdBeyondTheRing_Refused) {
  EXPECT_NE(blkif::check_request(rw(BLKIF_OP_READ, blkif::kIds, 0, 1), kDisk).find("id"), std::string::npos);
}

TEST(BlkifCheck, DiscardRange_CheckedAgainstTheDisk) {
  blkif_request_discard d{};
  d.operation = BLKIF_OP_DISCARD;
  d.sector_number = kDisk - 4;
  d.nr_sectors = 4;
  blkif_request r{};
  std::memcpy(&r, &d, sizeof(d));
  EXPECT_EQ(blkif::check_request(r, kDisk), "");
  d.nr_sectors = 5;
  std::memcpy(&r, &d, sizeof(d));
  EXPECT_NE(blkif::check_request(r, kDisk).find("discard"), std::string::npos);
}

TEST(BlkifCheck, FlushAndBareBarrier_Accepted_UnknownOperationRefused) {
  blkif_request f{};
  f.operation = BLKIF_OP_FLUSH_DISKCACHE;
  EXPECT_EQ(blkif::check_request(f, kDisk), "");
  f.operation = BLKIF_OP_WRITE_BARRIER;
  EXPECT_EQ(blkif::check_request(f, kDisk), "");
  f.operation = BLKIF_OP_INDIRECT;
  EXPECT_NE(blkif::check_request(f, kDisk).find("not supported"), std::string::npos);
}

TEST(BlkifStatus, OnlyBlkifsThreeStatuses_ArePlausible) {
  EXPECT_TRUE(blkif::plausible_status(BLKIF_RSP_OKAY));
  EXPECT_TRUE(blkif::plausible_status(BLKIF_RSP_ERROR));
  EXPECT_TRUE(blkif::plausible_status(BLKIF_RSP_EOPNOTSUPP));
  EXPECT_FALSE(blkif::plausible_status(7));
  EXPECT_FALSE(blkif::plausible_status(-5));
}

TEST(InflightTable, ResponseForARequestInFlight_GivesItsRequestOnce) {
  blkif::InflightTable t(blkif::kIds);
  auto req = rw(BLKIF_OP_WRITE, 4, 100, 1);
  ASSERT_TRUE(t.add(req));

  auto got = t.complete(answer(req));

  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->sector_number, 100u);
  EXPECT_EQ(t.count(), 0u);
}

TEST(InflightTable, SecondResponseForOneId_IsADuplicateAndCompletesNothing) {
  blkif::InflightTable t(blkif::kIds);
  auto req = rw(BLKIF_OP_WRITE, 4, 100, 1);
  ASSERT_TRUE(t.add(req));
  ASSERT_TRUE(t.complete(answer(req)));

  auto again = t.complete(answer(req));

  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Code::kRestartReplay);
  EXPECT_NE(again.error().message.find("duplicate response"), std::string::npos);
}

TEST(InflightTable, ResponseForAnIdNeverSent_IsUnknown) {
  blkif::InflightTable t(blkif::kIds);
  blkif_response a{};
  a.id = 9;

  auto got = t.complete(a);

  ASSERT_FALSE(got.has_value());
  EXPECT_NE(got.error().message.find("unknown id"), std::string::npos);
}

TEST(InflightTable, ResponseForAnIdBeyondTheTable_IsUnknown) {
  blkif::InflightTable t(blkif::kIds);
  blkif_response a{};
  a.id = 1ULL << 40;
  EXPECT_FALSE(t.complete(a).has_value());
}

TEST(InflightTable, WrongOperationOrStatus_RefusedAndRequestStaysInFlight) {
  blkif::InflightTable t(blkif::kIds);
  auto req = rw(BLKIF_OP_READ, 2, 0, 1);
  ASSERT_TRUE(t.add(req));
  auto wrong_op = answer(req);
  wrong_op.operation = BLKIF_OP_WRITE;
  auto wrong_status = answer(req, 7);

  auto a = t.complete(wrong_op);
  auto b = t.complete(wrong_status);

  EXPECT_NE(a.error().message.find("response of operation WRITE to a READ"), std::string::npos);
  EXPECT_NE(b.error().message.find("wrong status 7"), std::string::npos);
  EXPECT_TRUE(t.in_flight(2));
}

TEST(InflightTable, IdAlreadyInFlight_CannotBeAddedAgain) {
  blkif::InflightTable t(blkif::kIds);
  ASSERT_TRUE(t.add(rw(BLKIF_OP_READ, 2, 0, 1)));
  EXPECT_FALSE(t.add(rw(BLKIF_OP_READ, 2, 8, 1)).has_value());
}

TEST(InflightTable, InOrder_IsSubmissionOrderWhateverTheIds) {
  blkif::InflightTable t(blkif::kIds);
  blkif_request flush{};
  flush.operation = BLKIF_OP_FLUSH_DISKCACHE;
  flush.id = 1;
  ASSERT_TRUE(t.add(rw(BLKIF_OP_WRITE, 9, 0, 1)));
  ASSERT_TRUE(t.add(flush));
  ASSERT_TRUE(t.add(rw(BLKIF_OP_WRITE, 0, 8, 1)));
  ASSERT_TRUE(t.complete(answer(rw(BLKIF_OP_WRITE, 0, 8, 1))));
  ASSERT_TRUE(t.add(rw(BLKIF_OP_WRITE, 0, 16, 1)));  // id reused: submitted last

  auto order = t.in_order();

  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0].id, 9u);
  EXPECT_EQ(order[1].operation, BLKIF_OP_FLUSH_DISKCACHE);
  EXPECT_EQ(order[2].sector_number, 16u);
}

TEST(BlkifRequeue, InFlightRequests_PutBackOnAResetRingInSubmissionOrder) {
  alignas(4096) static uint8_t page[4096];
  auto ring = ring::FrontRing<blkif::Traits>::attach(page, sizeof(page), true);
  ASSERT_TRUE(ring);
  auto log = shadow::SplitterLog::create(blkif::kIds);
  ASSERT_TRUE(log);
  blkif::InflightTable t(blkif::kIds);
  blkif_request flush{};
  flush.operation = BLKIF_OP_FLUSH_DISKCACHE;
  flush.id = 2;
  for (const auto& r : {rw(BLKIF_OP_WRITE, 5, 0, 1), flush, rw(BLKIF_OP_WRITE, 1, 8, 1)}) {
    ASSERT_TRUE(t.add(r));
    ASSERT_TRUE(ring->put_request(r));
    log->record(static_cast<uint32_t>(r.id), 0, &r, blkif::kLoggedReq);
  }
  ring->push_requests();

  uint32_t n = blkif::requeue(*ring, t, *log);

  EXPECT_EQ(n, 3u);
  EXPECT_EQ(ring->req_prod_published(), 3u);  // the ring starts again at 0
  auto* s = reinterpret_cast<blkif_sring*>(page);
  EXPECT_EQ(s->ring[0].req.id, 5u);
  EXPECT_EQ(s->ring[1].req.operation, BLKIF_OP_FLUSH_DISKCACHE);
  EXPECT_EQ(s->ring[2].req.sector_number, 8u);
}

}  // namespace
