// The vbd's dom0 ring proxy, its side facing an unmodified guest's kernel
// blkfront, without Xen: the test plays the guest (its blkif ring in memory
// and the pages it grants per segment) and the disk behind the proxy (an
// in-memory BlockTarget), and checks what the guest's file system would
// see: data written reads back byte for byte, 32 requests at once are all
// answered, and hostile requests are refused without touching the disk.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "fake_guest_grants.hpp"
#include "sd/platform/local/event_channel.hpp"
#include "vbd/guest_disk.hpp"

namespace sd::front {
namespace {

using blkif::kPageSize;
using blkif::kSectorSize;

struct MemDisk final : BlockTarget {
  std::vector<uint8_t> bytes = std::vector<uint8_t>(1 << 20);
  std::atomic<int> reads{0}, writes{0}, flushes{0}, discards{0};
  int read(uint64_t off, size_t len, uint8_t* out) override {
    ++reads;
    std::memcpy(out, bytes.data() + off, len);
    return 0;
  }
  int write(uint64_t off, size_t len, const uint8_t* in) override {
    ++writes;
    std::memcpy(bytes.data() + off, in, len);
    return 0;
  }
  int flush() override { return ++flushes, 0; }
  int discard(uint64_t off, uint64_t len) override {
    ++discards;
    std::memset(bytes.data() + off, 0, len);
    return 0;
  }
};

class GuestDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ring_mem_ = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kPageSize));
    auto r = ring::FrontRing<blkif::Traits>::attach(ring_mem_, kPageSize, true);
    ASSERT_TRUE(r);
    ring_.emplace(std::move(*r));
    auto grants = std::make_unique<GuestPages>();
    pages_ = grants.get();
    UniqueFd a(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), b(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    blkif::DiskState st{};
    st.sectors = disk_.bytes.size() / kSectorSize;
    st.features = blkif::kFeatureFlush | blkif::kFeatureDiscard;
    auto g = GuestDisk::attach(ring_mem_, std::make_unique<local::LocalEventChannel>(std::move(a), std::move(b)),
                               std::move(grants), disk_, st, 8, "guest5/vbd/0");
    ASSERT_TRUE(g) << g.error().to_string();
    disk_port_ = std::move(*g);
  }
  void TearDown() override {
    disk_port_.reset();
    std::free(ring_mem_);
  }
  // A request over `n` whole pages starting at `ref`, sector `sector`.
  blkif_request rw(uint8_t op, uint64_t id, uint64_t sector, uint32_t ref, unsigned n) {
    blkif_request r{};
    r.operation = op;
    r.id = id;
    r.sector_number = sector;
    r.nr_segments = static_cast<uint8_t>(n);
    for (unsigned i = 0; i < n; ++i) {
      r.seg[i].gref = ref + i;
      r.seg[i].first_sect = 0;
      r.seg[i].last_sect = 7;
      pages_->pages[ref + i].resize(kPageSize);
    }
    return r;
  }
  void post(const blkif_request& r) { ASSERT_TRUE(ring_->put_request(r)); }
  // Serves until `n` responses reached the guest (up to 5 s).
  std::vector<blkif_response> answers(size_t n) {
    ring_->push_requests();
    std::vector<blkif_response> out;
    for (int i = 0; i < 500 && out.size() < n; ++i) {
      disk_port_->serve();
      for (;;) {
        auto r = ring_->get_response();
        if (!r || !*r) break;
        out.push_back(**r);
      }
      pollfd p{disk_port_->done_fd(), POLLIN, 0};
      (void)::poll(&p, 1, 10);
    }
    return out;
  }

  uint8_t* ring_mem_ = nullptr;
  std::optional<ring::FrontRing<blkif::Traits>> ring_;
  GuestPages* pages_ = nullptr;
  MemDisk disk_;
  std::unique_ptr<GuestDisk> disk_port_;
};

TEST_F(GuestDiskTest, WriteThenRead_SameBytesBack_PartialSegmentsRespected) {
  auto w = rw(BLKIF_OP_WRITE, 7, 16, 100, 3);
  for (unsigned i = 0; i < 3; ++i)
    for (size_t b = 0; b < kPageSize; ++b) pages_->pages[100 + i][b] = static_cast<uint8_t>(i * 31 + b * 7);
  w.seg[2].last_sect = 3;  // the last page half: 2.5 pages in all
  post(w);
  auto a = answers(1);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].id, 7u);
  EXPECT_EQ(a[0].operation, BLKIF_OP_WRITE);
  EXPECT_EQ(a[0].status, BLKIF_RSP_OKAY);
  EXPECT_EQ(std::memcmp(disk_.bytes.data() + 16 * kSectorSize, pages_->pages[100].data(), kPageSize), 0);
  EXPECT_EQ(std::memcmp(disk_.bytes.data() + 16 * kSectorSize + 2 * kPageSize, pages_->pages[102].data(), 2048), 0);
  EXPECT_EQ(disk_.bytes[16 * kSectorSize + 2 * kPageSize + 2048], 0);  // not written past the half page

  auto r = rw(BLKIF_OP_READ, 8, 16, 200, 3);
  r.seg[2].last_sect = 3;
  post(r);
  a = answers(1);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].status, BLKIF_RSP_OKAY);
  for (unsigned i = 0; i < 2; ++i) EXPECT_EQ(pages_->pages[200 + i], pages_->pages[100 + i]) << "page " << i;
  EXPECT_EQ(std::memcmp(pages_->pages[202].data(), pages_->pages[102].data(), 2048), 0);
}

TEST_F(GuestDiskTest, ThirtyTwoRequestsAtOnce_AllAnsweredOnceEachWithTheirData) {
  for (uint64_t id = 0; id < 32; ++id) {
    auto w = rw(BLKIF_OP_WRITE, 1000 + id, id * 8, 300 + static_cast<uint32_t>(id), 1);
    std::memset(pages_->pages[300 + id].data(), static_cast<int>(id + 1), kPageSize);
    post(w);
  }
  auto a = answers(32);
  ASSERT_EQ(a.size(), 32u);
  std::vector<bool> seen(32, false);
  for (const auto& r : a) {
    ASSERT_GE(r.id, 1000u);
    ASSERT_LT(r.id, 1032u);
    EXPECT_FALSE(seen[r.id - 1000]) << "id " << r.id << " answered twice";
    seen[r.id - 1000] = true;
    EXPECT_EQ(r.status, BLKIF_RSP_OKAY);
  }
  for (uint64_t id = 0; id < 32; ++id) EXPECT_EQ(disk_.bytes[id * 8 * kSectorSize + 100], id + 1);
  EXPECT_EQ(disk_port_->counters().done, 32u);
}

TEST_F(GuestDiskTest, HostileRequests_RefusedWithoutTouchingTheDisk) {
  auto past_end = rw(BLKIF_OP_WRITE, 1, disk_.bytes.size() / kSectorSize - 4, 400, 1);  // 8 sectors, 4 left
  auto bad_sect = rw(BLKIF_OP_WRITE, 2, 0, 401, 1);
  bad_sect.seg[0].first_sect = 6;
  bad_sect.seg[0].last_sect = 9;  // beyond its page
  auto too_many = rw(BLKIF_OP_WRITE, 3, 0, 402, 1);
  too_many.nr_segments = 12;
  blkif_request unknown{};
  unknown.operation = 42;
  unknown.id = 4;
  blkif_request barrier = rw(BLKIF_OP_WRITE_BARRIER, 5, 0, 403, 1);  // not offered
  for (const auto& r : {past_end, bad_sect, too_many, unknown, barrier}) post(r);
  auto a = answers(5);
  ASSERT_EQ(a.size(), 5u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(a[i].status, BLKIF_RSP_ERROR) << "request " << a[i].id;
  EXPECT_EQ(a[4].status, BLKIF_RSP_EOPNOTSUPP);
  EXPECT_EQ(disk_.writes, 0);
  EXPECT_EQ(disk_port_->counters().refused, 5u);
}

TEST_F(GuestDiskTest, SegmentNotGranted_ErrorAndNothingWritten) {
  auto w = rw(BLKIF_OP_WRITE, 9, 0, 500, 2);
  pages_->pages.erase(501);  // the guest never granted the second page
  post(w);
  auto a = answers(1);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].status, BLKIF_RSP_ERROR);
  EXPECT_EQ(disk_.writes, 0);
}

TEST_F(GuestDiskTest, FlushAndDiscard_ReachTheDisk) {
  blkif_request f{};
  f.operation = BLKIF_OP_FLUSH_DISKCACHE;
  f.id = 1;
  post(f);
  blkif_request_discard d{};
  d.operation = BLKIF_OP_DISCARD;
  d.id = 2;
  d.sector_number = 8;
  d.nr_sectors = 8;
  blkif_request dr;
  std::memcpy(&dr, &d, sizeof(d));
  std::memset(disk_.bytes.data() + 8 * kSectorSize, 0xff, 8 * kSectorSize);
  post(dr);
  auto a = answers(2);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].status, BLKIF_RSP_OKAY);
  EXPECT_EQ(a[1].status, BLKIF_RSP_OKAY);
  EXPECT_EQ(disk_.flushes, 1);
  EXPECT_EQ(disk_.bytes[8 * kSectorSize + 10], 0);
}

TEST_F(GuestDiskTest, ImpossibleReqProd_PortStopsForGood) {
  reinterpret_cast<blkif_sring*>(ring_mem_)->req_prod = 1000;
  disk_port_->serve();
  EXPECT_TRUE(disk_port_->broken());
  EXPECT_EQ(disk_.writes + disk_.reads, 0);
}

}  // namespace
}  // namespace sd::front
