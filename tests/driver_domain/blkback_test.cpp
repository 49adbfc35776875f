// The vbd backend (driver_domain/vbd/blkback.cpp) against a frontend faked in
// this process and a temporary disk file: what reaches the disk, what is
// refused, how requests are answered (and, on purpose, mis-answered).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "sd/core/blkif.hpp"
#include "sd/core/ring.hpp"
#include "sd/platform/local/event_channel.hpp"
#include "vbd/blkback.hpp"

namespace {

using namespace sd;
using namespace std::chrono_literals;

constexpr uint64_t kDiskBytes = 1 << 20;

class BlkbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/sd-blkback-XXXXXX";
    disk_.reset(::mkstemp(path));
    ASSERT_TRUE(disk_);
    ::unlink(path);
    ASSERT_EQ(::ftruncate(disk_.get(), kDiskBytes), 0);
    pool_.resize(blkif::kPoolPages);
    page_.resize(blkif::kPoolPages);
    for (uint32_t i = 0; i < blkif::kPoolPages; ++i) {
      pool_[i].reset(::memfd_create("page", MFD_CLOEXEC));
      ASSERT_EQ(::ftruncate(pool_[i].get(), 4096), 0);
      page_[i] = static_cast<uint8_t*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, pool_[i].get(), 0));
    }
    auto fr = ring::FrontRing<blkif::Traits>::attach(page_[blkif::kRingRef], 4096, true);
    front_.emplace(std::move(*fr));
    kick_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    notified_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  }
  void TearDown() override {
    back_.reset();
    for (auto* p : page_) ::munmap(p, 4096);
  }

  static constexpr uint32_t kAll = blkif::kFeatureFlush | blkif::kFeatureBarrier | blkif::kFeatureDiscard;
  // direct: the disk opened O_DIRECT, which the backend serves with workers
  // running requests side by side (else its dispatcher runs each itself).
  void attach(uint32_t features = kAll, bool direct = false) {
    auto pages = std::make_unique<drvdom::GrantedPages>(blkif::kPoolPages);
    for (uint32_t i = 0; i < blkif::kPoolPages; ++i) pages->add(i, UniqueFd(::dup(pool_[i].get())));
    auto evt = std::make_unique<local::LocalEventChannel>(UniqueFd(::dup(notified_.get())), UniqueFd(::dup(kick_.get())));
    blkif::DiskState d{};
    d.sectors = kDiskBytes / 512;
    d.features = features;
    UniqueFd disk(direct ? ::open(("/proc/self/fd/" + std::to_string(disk_.get())).c_str(), O_RDWR | O_DIRECT)
                         : ::dup(disk_.get()));
    ASSERT_TRUE(disk) << "O_DIRECT on /tmp";
    auto b = drvdom::Blkback::create(std::move(pages), std::move(evt), std::move(disk), d);
    ASSERT_TRUE(b.has_value()) << b.error().message;
    back_ = std::move(*b);
  }

  blkif_request rw(uint8_t op, uint64_t id, uint64_t sector, unsigned pages) {
    blkif_request r{};
    r.operation = op;
    r.id = id;
    r.sector_number = sector;
    r.nr_segments = static_cast<uint8_t>(pages);
    for (unsigned i = 0; i < pages; ++i) r.seg[i] = {blkif::data_ref(id, i), 0, 7};
    return r;
  }
  uint8_t* data(uint64_t id, unsigned seg) { return page_[blkif::data_ref(id, seg)]; }

  void post(const blkif_request& r) {
    ASSERT_TRUE(front_->put_request(r));
    front_->push_requests();
    uint64_t one = 1;
    ASSERT_EQ(::write(kick_.get(), &one, 8), 8);
  }
  // Writes of one page each for ids [first, last), each at its own sector.
  void put_writes(uint64_t first, uint64_t last) {
    for (uint64_t id = first; id < last; ++id) ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_WRITE, id, id * 8, 1)));
  }
  void put_flush(uint64_t id) {
    blkif_request flush{};
    flush.operation = BLKIF_OP_FLUSH_DISKCACHE;
    flush.id = id;
    ASSERT_TRUE(front_->put_request(flush));
  }
  // Publishes what was put and kicks the backend once.
  void push_and_kick() {
    front_->push_requests();
    uint64_t one = 1;
    ASSERT_EQ(::write(kick_.get(), &one, 8), 8);
  }
  // The next `n` responses (waits up to 2 s for them).
  std::vector<blkif_response> responses(size_t n) {
    std::vector<blkif_response> out;
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto r = front_->get_response();
      if (!r) break;
      if (*r)
        out.push_back(**r);
      else
        std::this_thread::sleep_for(1ms);
    }
    return out;
  }

  UniqueFd disk_, kick_, notified_;
  std::vector<UniqueFd> pool_;
  std::vector<uint8_t*> page_;
  std::optional<ring::FrontRing<blkif::Traits>> front_;
  std::unique_ptr<drvdom::Blkback> back_;
};

TEST_F(BlkbackTest, WriteTwoPages_ReachTheDiskAtItsSector) {
  attach();
  std::memset(data(3, 0), 0xab, 4096);
  std::memset(data(3, 1), 0xcd, 4096);

  post(rw(BLKIF_OP_WRITE, 3, 16, 2));
  auto rsp = responses(1);

  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].id, 3u);
  EXPECT_EQ(rsp[0].operation, BLKIF_OP_WRITE);
  EXPECT_EQ(rsp[0].status, BLKIF_RSP_OKAY);
  uint8_t got[2] = {};
  ASSERT_EQ(::pread(disk_.get(), &got[0], 1, 16 * 512), 1);
  ASSERT_EQ(::pread(disk_.get(), &got[1], 1, 16 * 512 + 4096), 1);
  EXPECT_EQ(got[0], 0xab);
  EXPECT_EQ(got[1], 0xcd);
}

// Large reads and writes that continue one another run as one call (the
// dispatcher merges them); each is still answered once, with its own data
// and status, and an invalid one among them is refused alone.
TEST_F(BlkbackTest, ContinuingLargeRequests_MergedEachAnsweredWithItsOwnDataAndStatus) {
  std::vector<uint8_t> blob(kDiskBytes);
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<uint8_t>(i / 512 * 7 + i % 251);
  ASSERT_EQ(::pwrite(disk_.get(), blob.data(), blob.size(), 0), static_cast<ssize_t>(blob.size()));
  attach();
  for (uint64_t id = 0; id < 3; ++id) ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_READ, id, id * 88, 11)));
  auto bad = rw(BLKIF_OP_READ, 3, 3 * 88, 11);
  bad.seg[4] = {blkif::data_ref(3, 4), 5, 2};  // last sector before the first
  ASSERT_TRUE(front_->put_request(bad));
  ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_READ, 4, 4 * 88, 11)));  // continues the bad one
  ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_READ, 5, 1000, 11)));    // apart
  for (uint64_t id = 6; id < 8; ++id) {
    for (unsigned s = 0; s < 11; ++s) std::memset(data(id, s), static_cast<int>(0x60 + id * 11 + s), 4096);
    ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_WRITE, id, 1200 + (id - 6) * 88, 11)));
  }
  push_and_kick();

  auto rsp = responses(8);

  ASSERT_EQ(rsp.size(), 8u);
  std::vector<int> times(8, 0);
  for (const auto& r : rsp) {
    ASSERT_LT(r.id, 8u);
    ++times[r.id];
    EXPECT_EQ(r.status, r.id == 3 ? BLKIF_RSP_ERROR : BLKIF_RSP_OKAY) << "id " << r.id;
  }
  EXPECT_EQ(times, std::vector<int>(8, 1));
  const uint64_t sector_of[6] = {0, 88, 176, 0, 352, 1000};
  for (uint64_t id : {0, 1, 2, 4, 5})
    for (unsigned s = 0; s < 11; ++s)
      EXPECT_EQ(std::memcmp(data(id, s), &blob[(sector_of[id] + s * 8) * 512], 4096), 0) << "id " << id << " page " << s;
  std::vector<uint8_t> got(2 * 11 * 4096);
  ASSERT_EQ(::pread(disk_.get(), got.data(), got.size(), 1200 * 512), static_cast<ssize_t>(got.size()));
  for (uint64_t id = 6; id < 8; ++id)
    for (unsigned s = 0; s < 11; ++s)
      EXPECT_EQ(got[((id - 6) * 11 + s) * 4096 + 100], static_cast<uint8_t>(0x60 + id * 11 + s)) << "id " << id;
}

TEST_F(BlkbackTest, ReadPartOfAPage_FillsOnlyThoseSectors) {
  std::vector<uint8_t> blob(1024, 0x5a);
  ASSERT_EQ(::pwrite(disk_.get(), blob.data(), blob.size(), 40 * 512), 1024);
  attach();
  std::memset(data(0, 0), 0, 4096);
  auto r = rw(BLKIF_OP_READ, 0, 40, 1);
  r.seg[0] = {blkif::data_ref(0, 0), 2, 3};  // sectors 2..3 of the page

  post(r);
  auto rsp = responses(1);

  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, BLKIF_RSP_OKAY);
  EXPECT_EQ(data(0, 0)[2 * 512], 0x5a);
  EXPECT_EQ(data(0, 0)[4 * 512 - 1], 0x5a);
  EXPECT_EQ(data(0, 0)[0], 0);
  EXPECT_EQ(data(0, 0)[4 * 512], 0);
}

// Requests apart run side by side and may be answered in any order; a
// flush waits for everything before it.
TEST_F(BlkbackTest, ManyRequestsOneKick_EachAnsweredOnceTheFlushLast) {
  attach(kAll, true);
  put_writes(0, 16);
  put_flush(16);
  push_and_kick();

  auto rsp = responses(17);

  ASSERT_EQ(rsp.size(), 17u);
  std::vector<int> seen(17, 0);
  for (const auto& r : rsp) {
    ASSERT_LT(r.id, 17u);
    ++seen[r.id];
    EXPECT_EQ(r.status, BLKIF_RSP_OKAY);
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 17);
  EXPECT_EQ(rsp[16].id, 16u);
  EXPECT_EQ(rsp[16].operation, BLKIF_OP_FLUSH_DISKCACHE);
}

// Writes to the same sectors land, and are answered, in ring order.
TEST_F(BlkbackTest, OverlappingWrites_LandInRingOrder) {
  attach(kAll, true);
  for (uint64_t id = 0; id < 24; ++id) {
    std::memset(data(id, 0), static_cast<int>(id + 1), 4096);
    std::memset(data(id, 1), static_cast<int>(id + 1), 4096);
    // Two pages each, every one starting a page further: each overlaps the next.
    ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_WRITE, id, (id % 2) * 8, 2)));
  }
  front_->push_requests();
  uint64_t one = 1;
  ASSERT_EQ(::write(kick_.get(), &one, 8), 8);

  auto rsp = responses(24);

  ASSERT_EQ(rsp.size(), 24u);
  for (uint64_t i = 0; i < 24; ++i) EXPECT_EQ(rsp[i].id, i);
  uint8_t got[3] = {};
  ASSERT_EQ(::pread(disk_.get(), &got[0], 1, 0), 1);         // last written by id 22
  ASSERT_EQ(::pread(disk_.get(), &got[1], 1, 4096), 1);      // by id 23
  ASSERT_EQ(::pread(disk_.get(), &got[2], 1, 2 * 4096), 1);  // by id 23
  EXPECT_EQ(got[0], 23);
  EXPECT_EQ(got[1], 24);
  EXPECT_EQ(got[2], 24);
}

// A flush holds back what comes after it: every write before it is
// answered before it, every write after it after it.
TEST_F(BlkbackTest, WritesAroundAFlush_StayOnTheirSide) {
  attach(kAll, true);
  put_writes(0, 8);
  put_flush(8);
  put_writes(9, 17);
  push_and_kick();

  auto rsp = responses(17);

  ASSERT_EQ(rsp.size(), 17u);
  EXPECT_EQ(rsp[8].id, 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_LT(rsp[i].id, 8u);
  for (size_t i = 9; i < 17; ++i) EXPECT_GT(rsp[i].id, 8u);
}

TEST_F(BlkbackTest, Barrier_WritesAndAnswersOkay) {
  attach();
  std::memset(data(5, 0), 0x11, 4096);

  post(rw(BLKIF_OP_WRITE_BARRIER, 5, 0, 1));
  auto rsp = responses(1);

  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, BLKIF_RSP_OKAY);
  uint8_t b = 0;
  ASSERT_EQ(::pread(disk_.get(), &b, 1, 0), 1);
  EXPECT_EQ(b, 0x11);
}

TEST_F(BlkbackTest, Discard_PunchesAHoleThatReadsAsZeros) {
  std::vector<uint8_t> blob(8192, 0x77);
  ASSERT_EQ(::pwrite(disk_.get(), blob.data(), blob.size(), 0), 8192);
  attach();
  blkif_request_discard d{};
  d.operation = BLKIF_OP_DISCARD;
  d.id = 1;
  d.sector_number = 0;
  d.nr_sectors = 16;
  blkif_request r{};
  std::memcpy(&r, &d, sizeof(d));

  post(r);
  auto rsp = responses(1);

  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, BLKIF_RSP_OKAY);
  uint8_t b = 1;
  ASSERT_EQ(::pread(disk_.get(), &b, 1, 4096), 1);
  EXPECT_EQ(b, 0);
}

TEST_F(BlkbackTest, DiscardWithoutTheFeature_AnswersEopnotsupp) {
  attach(blkif::kFeatureFlush);
  blkif_request_discard d{};
  d.operation = BLKIF_OP_DISCARD;
  d.nr_sectors = 8;
  blkif_request r{};
  std::memcpy(&r, &d, sizeof(d));

  post(r);
  auto rsp = responses(1);

  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, BLKIF_RSP_EOPNOTSUPP);
}

TEST_F(BlkbackTest, WriteBeyondTheDisk_AnsweredErrorDiskUntouched) {
  attach();
  std::memset(data(2, 0), 0xee, 4096);

  post(rw(BLKIF_OP_WRITE, 2, kDiskBytes / 512 - 4, 1));
  auto rsp = responses(1);

  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_EQ(rsp[0].status, BLKIF_RSP_ERROR);
  struct stat st;
  ASSERT_EQ(::fstat(disk_.get(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kDiskBytes);
}

TEST_F(BlkbackTest, InjectedBadId_AnswersAnIdNeverInFlight) {
  attach();
  back_->inject(ctl::FaultKind::kBadId);

  post(rw(BLKIF_OP_READ, 4, 0, 1));
  auto rsp = responses(1);

  ASSERT_EQ(rsp.size(), 1u);
  EXPECT_GE(rsp[0].id, blkif::kIds);
}

TEST_F(BlkbackTest, InjectedBadProd_AnswersOneRequestTwiceAndTheOtherNever) {
  attach(kAll, true);
  back_->inject(ctl::FaultKind::kBadProd);
  ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_READ, 1, 0, 1)));
  ASSERT_TRUE(front_->put_request(rw(BLKIF_OP_READ, 2, 8, 1)));
  front_->push_requests();
  uint64_t one = 1;
  ASSERT_EQ(::write(kick_.get(), &one, 8), 8);

  auto rsp = responses(2);

  ASSERT_EQ(rsp.size(), 2u);  // the two run side by side: either is answered first
  EXPECT_TRUE(rsp[0].id == 1u || rsp[0].id == 2u);
  EXPECT_EQ(rsp[1].id, rsp[0].id);
}

TEST_F(BlkbackTest, ImpossibleReqProd_ReportedAsAProtocolError) {
  attach();
  auto* s = reinterpret_cast<blkif_sring*>(page_[blkif::kRingRef]);
  s->req_prod = 1000;  // far beyond what the ring can hold
  uint64_t one = 1;
  ASSERT_EQ(::write(kick_.get(), &one, 8), 8);

  pollfd p{};
  std::vector<pollfd> fds;
  back_->poll_fds(fds);
  ASSERT_EQ(fds.size(), 1u);
  p = fds[0];
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  auto r = back_->service();

  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("req_prod=1000"), std::string::npos);
}

}  // namespace
