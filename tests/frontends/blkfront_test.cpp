// The vbd beam splitter (frontends/vbd/blkfront.cpp) against a fake shadowd
// and a fake backend in this process: what it puts on the ring and in the
// splitter log, what it reports as a backend fault, how it replays, and that
// a caller sees each request complete exactly once.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "sd/core/device_class.hpp"
#include "sd/core/blkif.hpp"
#include "sd/core/control_channel.hpp"
#include "sd/core/ring.hpp"
#include "sd/core/splitter_log.hpp"
#include "vbd/blkfront.hpp"

namespace {

using namespace sd;
using namespace std::chrono_literals;

constexpr uint64_t kSectors = 2048;  // a 1 MiB disk

// shadowd's side of the handshake plus a backend serving the ring from a
// thread over an in-memory disk, with a pluggable answer.
class Harness {
 public:
  // What to answer for one request (already executed on the disk).
  using Answer = std::function<std::vector<blkif_response>(const blkif_request&)>;

  explicit Harness(uint32_t queue_limit = 256) : disk_(kSectors * 512, 0) {
    auto p = ctl::Channel::pair();
    shadowd_ = std::move(p->first);
    log_ = std::move(*shadow::SplitterLog::create(blkif::kIds));
    to_back_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    to_front_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    pages_.resize(blkif::kPoolPages);
    map_.resize(blkif::kPoolPages);
    for (uint32_t i = 0; i < blkif::kPoolPages; ++i) {
      pages_[i].reset(::memfd_create("page", MFD_CLOEXEC));
      (void)!::ftruncate(pages_[i].get(), 4096);
      map_[i] = static_cast<uint8_t*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, pages_[i].get(), 0));
    }
    ctl::Msg att;
    att.type = ctl::MsgType::kDevAttach;
    att.a = static_cast<uint32_t>(sd::DeviceClass::kVbd);
    att.b = 9;
    blkif::DiskState d{};
    d.sectors = kSectors;
    d.features = blkif::kFeatureFlush | blkif::kFeatureDiscard;
    d.queue_limit = queue_limit;
    att.set_payload(d);
    int fds[3] = {log_.fd(), to_back_.get(), to_front_.get()};
    (void)shadowd_.send_fds(att, fds, 3);
    for (uint32_t first = 0; first < blkif::kPoolPages; first += ctl::Channel::kMaxFds) {
      std::vector<int> batch;
      for (uint32_t i = first; i < std::min<uint32_t>(first + ctl::Channel::kMaxFds, blkif::kPoolPages); ++i)
        batch.push_back(pages_[i].get());
      ctl::Msg g;
      g.type = ctl::MsgType::kGrantFds;
      g.a = first;
      g.b = 9;
      (void)shadowd_.send_fds(g, batch.data(), batch.size());
    }
    auto f = front::Blkfront::attach(std::move(p->second));
    EXPECT_TRUE(f.has_value()) << (f ? "" : f.error().message);
    if (f) front_ = std::move(*f);
    (void)shadowd_.set_nonblocking(true);
    attach_back();
  }
  ~Harness() { stop(); }

  void attach_back() { back_.emplace(std::move(*ring::BackRing<blkif::Traits>::attach(map_[0], 4096, false))); }

  // Executes each request on the in-memory disk, then answers per `a`.
  void serve(Answer a) {
    answer_ = std::move(a);
    run_ = true;
    thread_ = std::thread([this] {
      while (run_) {
        {
          std::lock_guard<std::mutex> l(mu_);
          bool any = false;
          for (;;) {
            auto q = back_->get_request();
            if (!q || !*q) break;
            const blkif_request r = **q;
            seen_.push_back(r);
            execute(r);
            for (const auto& rsp : answer_(r)) {
              (void)back_->put_response(rsp);
              any = true;
            }
          }
          if (any) {
            back_->push_responses();
            uint64_t one = 1;
            (void)!::write(to_front_.get(), &one, 8);
          }
        }
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  void stop() {
    run_ = false;
    if (thread_.joinable()) thread_.join();
  }
  static std::vector<blkif_response> ok(const blkif_request& q) {
    blkif_response r{};
    r.id = q.id;
    r.operation = q.operation;
    return {r};
  }
  void execute(const blkif_request& r) {
    if (r.operation != BLKIF_OP_READ && r.operation != BLKIF_OP_WRITE) return;
    uint64_t off = r.sector_number * 512;
    for (unsigned i = 0; i < r.nr_segments && i < blkif::kSegs; ++i) {
      uint32_t ref = r.seg[i].gref;
      size_t n = size_t{r.seg[i].last_sect - r.seg[i].first_sect + 1u} * 512;
      uint8_t* pg = map_[ref] + r.seg[i].first_sect * 512;
      if (r.operation == BLKIF_OP_WRITE)
        std::memcpy(&disk_[off], pg, n);
      else
        std::memcpy(pg, &disk_[off], n);
      off += n;
    }
  }
  std::vector<ctl::Msg> control() {
    std::vector<ctl::Msg> out;
    for (;;) {
      auto m = shadowd_.recv();
      if (!m || !*m) break;
      out.push_back(**m);
    }
    return out;
  }
  // What shadowd does for a new backend: the frontend repairs its ring
  // (kReconnect -> kReconnected), then the backend takes it over.
  bool reconnect() {
    stop();
    ctl::Msg rc;
    rc.type = ctl::MsgType::kReconnect;
    rc.b = 9;
    if (!shadowd_.send(rc)) return false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    bool done = false;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      for (const auto& m : control()) done = done || m.type == ctl::MsgType::kReconnected;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!done) return false;
    attach_back();
    serve(ok);
    uint64_t one = 1;
    (void)!::write(to_back_.get(), &one, 8);
    return true;
  }
  std::vector<blkif_request> seen() {
    std::lock_guard<std::mutex> l(mu_);
    return seen_;
  }

  ctl::Channel shadowd_;
  shadow::SplitterLog log_;
  UniqueFd to_back_, to_front_;
  std::vector<UniqueFd> pages_;
  std::vector<uint8_t*> map_;
  std::vector<uint8_t> disk_;
  std::unique_ptr<front::Blkfront> front_;
  std::optional<ring::BackRing<blkif::Traits>> back_;
  Answer answer_;
  std::mutex mu_;
  std::vector<blkif_request> seen_;
  std::atomic<bool> run_{false};
  std::thread thread_;
};

bool wait_for(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

TEST(Blkfront, Attach_DiskSizeFromShadowdAndDiskStateInTheLog) {
  Harness h;
  ASSERT_TRUE(h.front_);
  blkif::DiskState logged{};

  ASSERT_EQ(h.log_.get_config(&logged, sizeof(logged)), sizeof(logged));

  EXPECT_EQ(h.front_->size_bytes(), kSectors * 512);
  EXPECT_EQ(logged.sectors, kSectors);
  EXPECT_EQ(h.control().at(0).type, ctl::MsgType::kDevAttached);
}

TEST(Blkfront, UnalignedWriteThenRead_RoundTripsThroughTheRing) {
  Harness h;
  h.serve(Harness::ok);
  std::vector<uint8_t> in(10000);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> out(in.size());

  ASSERT_EQ(h.front_->write(1000, in.size(), in.data()), 0);
  ASSERT_EQ(h.front_->read(1000, out.size(), out.data()), 0);

  EXPECT_EQ(out, in);
  EXPECT_EQ(std::memcmp(&h.disk_[1000], in.data(), in.size()), 0);
}

TEST(Blkfront, LargeWrite_SplitIntoRequestsOfAtMostElevenPages) {
  Harness h;
  h.serve(Harness::ok);
  std::vector<uint8_t> in(100 * 1024, 0x42);

  ASSERT_EQ(h.front_->write(0, in.size(), in.data()), 0);

  auto seen = h.seen();
  ASSERT_EQ(seen.size(), 3u);  // 44 + 44 + 12 KiB
  for (const auto& r : seen) EXPECT_LE(r.nr_segments, blkif::kSegs);
}

// A 1 MiB write is 24 requests, all on the ring at once (not one after
// another): with nothing answered, the log holds every one.
TEST(Blkfront, LargeWrite_AllItsRequestsInFlightAtOnce) {
  Harness h;
  h.serve([](const blkif_request&) { return std::vector<blkif_response>{}; });  // never answer
  std::vector<uint8_t> in(1 << 20, 0x17);
  auto done = std::async(std::launch::async, [&] { return h.front_->write(0, in.size(), in.data()); });

  EXPECT_TRUE(wait_for([&] { return h.log_.count(0) == 24; })) << h.log_.count(0) << " in flight";
  h.stop();
  h.shadowd_ = ctl::Channel();  // shadowd gone: the caller gets EIO, not a hang
  EXPECT_EQ(done.get(), -EIO);
}

// The asynchronous call: done() runs once, with the read's data in place.
struct Done {
  std::atomic<int> calls{0};
  std::atomic<int> rc{1};
  std::thread::id on;  // the thread of the last call (read after `calls`)
  static void cb(void* ctx, int rc) {
    auto* d = static_cast<Done*>(ctx);
    d->rc = rc;
    d->on = std::this_thread::get_id();
    ++d->calls;
  }
};

TEST(Blkfront, StartARead_DoneOnceWithTheData) {
  Harness h;
  h.serve(Harness::ok);
  for (size_t i = 0; i < 100 * 1024; ++i) h.disk_[4096 + i] = static_cast<uint8_t>(i * 13);
  std::vector<uint8_t> out(100 * 1024);
  Done d;
  front::Blkfront::Io io;
  io.done = Done::cb;
  io.ctx = &d;
  io.rdata = out.data();

  h.front_->start(io, BLKIF_OP_READ, 8, out.size() / 512, nullptr);

  ASSERT_TRUE(wait_for([&] { return d.calls.load() > 0; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(d.calls.load(), 1);
  EXPECT_EQ(d.rc.load(), 0);
  EXPECT_EQ(std::memcmp(out.data(), &h.disk_[4096], out.size()), 0);
  EXPECT_EQ(h.seen().size(), 3u);  // 44 + 44 + 12 KiB
}

// A lent read's data is read from the ring's pages after done(); its ids
// stay held until return_lent, yet they do not hold the ring: two lent 1 MiB
// reads (48 ids, more than the 32 slots) and a plain read after them are
// all answered before either is given back.
TEST(Blkfront, LentReads_HoldMoreIdsThanRingSlots_RingStillServesAndDataIsTheDisks) {
  Harness h;
  h.serve(Harness::ok);
  for (size_t i = 0; i < h.disk_.size(); ++i) h.disk_[i] = static_cast<uint8_t>(i * 13 + i / 4096);
  Done d1, d2, d3;
  front::Blkfront::Io a, b, c;
  a.done = b.done = c.done = Done::cb;
  a.ctx = &d1;
  b.ctx = &d2;
  c.ctx = &d3;
  a.lend = b.lend = true;
  std::vector<uint8_t> plain(100 * 1024);
  c.rdata = plain.data();

  h.front_->start(a, BLKIF_OP_READ, 0, kSectors, nullptr);
  h.front_->start(b, BLKIF_OP_READ, 0, kSectors, nullptr);
  ASSERT_TRUE(wait_for([&] { return d1.calls.load() == 1 && d2.calls.load() == 1; }));
  h.front_->start(c, BLKIF_OP_READ, 16, plain.size() / 512, nullptr);
  ASSERT_TRUE(wait_for([&] { return d3.calls.load() == 1; }));

  EXPECT_EQ(a.lent.size() + b.lent.size(), 48u);
  EXPECT_EQ(std::memcmp(plain.data(), &h.disk_[8192], plain.size()), 0);
  std::vector<uint8_t> got;
  h.front_->return_lent(a, [&](const iovec* v, size_t n) {
    for (size_t i = 0; i < n; ++i) got.insert(got.end(), static_cast<uint8_t*>(v[i].iov_base),
                                              static_cast<uint8_t*>(v[i].iov_base) + v[i].iov_len);
  });
  EXPECT_EQ(got, h.disk_);
  EXPECT_TRUE(a.lent.empty());
  h.front_->return_lent(b, [](const iovec*, size_t) {});
  EXPECT_EQ(d1.rc.load(), 0);
  EXPECT_EQ(d3.rc.load(), 0);
}

// A lent read that would need more than half the ids is refused: it could
// wait forever for ids held by itself.
TEST(Blkfront, LentReadOfMoreThanHalfTheIds_RefusedWithEinval) {
  Harness h;
  h.serve(Harness::ok);
  Done d;
  front::Blkfront::Io io;
  io.done = Done::cb;
  io.ctx = &d;
  io.lend = true;

  h.front_->start(io, BLKIF_OP_READ, 0, (blkif::kIds / 2 + 1) * blkif::kMaxIoBytes / 512, nullptr);

  EXPECT_EQ(d.calls.load(), 1);
  EXPECT_EQ(d.rc.load(), -EINVAL);
  EXPECT_TRUE(h.seen().empty());
}

// sd-blkfront's one loop: requests come from a source the service thread
// serves. Starting more than the ring holds from there cannot wait for the
// service thread (it is that thread): it takes the answers itself. Once
// shadowd is gone the source is still served and its requests fail at once.
TEST(Blkfront, ServedSource_MoreRequestsThanTheRingHolds_StartedOnTheServiceThreadAllDone) {
  Harness h;
  h.serve(Harness::ok);
  struct Source {
    front::Blkfront* front = nullptr;
    sd::UniqueFd fd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    std::vector<uint8_t> data = std::vector<uint8_t>(40 * 8192);
    std::vector<front::Blkfront::Io> ios = std::vector<front::Blkfront::Io>(41);
    Done done, late;
    std::atomic<int> turns{0};
    std::thread::id on;
  } src;
  src.front = h.front_.get();
  for (size_t i = 0; i < src.data.size(); ++i) src.data[i] = static_cast<uint8_t>(i * 31 + 7);
  h.front_->serve_also(src.fd.get(), [](void* ctx) {
    auto* s = static_cast<Source*>(ctx);
    uint64_t n;
    if (::read(s->fd.get(), &n, sizeof(n)) != sizeof(n)) return;
    s->on = std::this_thread::get_id();
    if (s->turns++ == 0) {
      for (size_t k = 0; k < 40; ++k) {  // 40 requests, 32 ring slots
        s->ios[k].done = Done::cb;
        s->ios[k].ctx = &s->done;
        s->front->start(s->ios[k], BLKIF_OP_WRITE, k * 16, 16, s->data.data() + k * 8192);
      }
    } else {
      s->ios[40].done = Done::cb;
      s->ios[40].ctx = &s->late;
      s->front->start(s->ios[40], BLKIF_OP_WRITE, 0, 16, s->data.data());
    }
  }, &src);
  uint64_t one = 1;

  ASSERT_EQ(::write(src.fd.get(), &one, sizeof(one)), 8);
  ASSERT_TRUE(wait_for([&] { return src.done.calls.load() == 40; })) << src.done.calls.load() << " of 40 done";

  EXPECT_EQ(src.done.rc.load(), 0);
  EXPECT_NE(src.on, std::this_thread::get_id());
  EXPECT_EQ(src.done.on, src.on) << "the requests were not started on the thread that answers them";
  EXPECT_EQ(std::memcmp(h.disk_.data(), src.data.data(), src.data.size()), 0);
  EXPECT_EQ(h.front_->stats().completed, 40u);
  h.stop();
  h.shadowd_ = ctl::Channel();  // shadowd gone
  ASSERT_TRUE(wait_for([&] { return h.front_->gone(); }));
  ASSERT_EQ(::write(src.fd.get(), &one, sizeof(one)), 8);
  ASSERT_TRUE(wait_for([&] { return src.late.calls.load() == 1; }));
  EXPECT_EQ(src.late.rc.load(), -EIO);
  h.front_.reset();  // its service thread stops calling into src
}

// The service thread waiting for a free slot in an outage (the backend
// answers nothing) does not hold up the destructor: what it could not post
// fails with EIO and the frontend stops at once.
TEST(Blkfront, DestroyedWhileTheServiceThreadWaitsForASlot_StopsAndTheRestFailsWithEio) {
  Harness h;
  h.serve([](const blkif_request&) { return std::vector<blkif_response>{}; });  // never answer
  struct Source {
    front::Blkfront* front = nullptr;
    sd::UniqueFd fd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    std::vector<uint8_t> data = std::vector<uint8_t>(8192, 5);
    std::vector<front::Blkfront::Io> ios = std::vector<front::Blkfront::Io>(40);
    Done done;
  } src;
  src.front = h.front_.get();
  h.front_->serve_also(src.fd.get(), [](void* ctx) {
    auto* s = static_cast<Source*>(ctx);
    uint64_t n;
    if (::read(s->fd.get(), &n, sizeof(n)) != sizeof(n)) return;
    for (size_t k = 0; k < 40; ++k) {  // 40 requests, 32 ring slots, none answered
      s->ios[k].done = Done::cb;
      s->ios[k].ctx = &s->done;
      s->front->start(s->ios[k], BLKIF_OP_WRITE, k * 16, 16, s->data.data());
    }
  }, &src);
  uint64_t one = 1;
  ASSERT_EQ(::write(src.fd.get(), &one, sizeof(one)), 8);
  ASSERT_TRUE(wait_for([&] { return h.log_.count(0) == 32; })) << h.log_.count(0) << " in flight";

  auto destroyed = std::async(std::launch::async, [&] { h.front_.reset(); });

  bool prompt = destroyed.wait_for(2s) == std::future_status::ready;
  if (!prompt) h.shadowd_ = ctl::Channel();  // shadowd gone: the test ends either way
  destroyed.wait();
  ASSERT_TRUE(prompt) << "the destructor waited for the outage";
  EXPECT_EQ(src.done.calls.load(), 8);
  EXPECT_EQ(src.done.rc.load(), -EIO);
}

TEST(Blkfront, StartAWrite_ShadowdGone_DoneOnceWithEio) {
  Harness h;
  h.serve([](const blkif_request&) { return std::vector<blkif_response>{}; });  // never answer
  std::vector<uint8_t> in(64 * 1024, 3);
  Done d;
  front::Blkfront::Io io;
  io.done = Done::cb;
  io.ctx = &d;

  h.front_->start(io, BLKIF_OP_WRITE, 0, in.size() / 512, in.data());
  ASSERT_TRUE(wait_for([&] { return h.log_.count(0) == 2; }));
  h.stop();
  h.shadowd_ = ctl::Channel();

  ASSERT_TRUE(wait_for([&] { return d.calls.load() > 0; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(d.calls.load(), 1);
  EXPECT_EQ(d.rc.load(), -EIO);
}

TEST(Blkfront, Flush_IsAFlushDiskcacheRequest) {
  Harness h;
  h.serve(Harness::ok);

  ASSERT_EQ(h.front_->flush(), 0);

  ASSERT_EQ(h.seen().size(), 1u);
  EXPECT_EQ(h.seen()[0].operation, BLKIF_OP_FLUSH_DISKCACHE);
}

TEST(Blkfront, OutsideTheDisk_EinvalWithoutARequest) {
  Harness h;
  h.serve(Harness::ok);
  uint8_t b[512];

  EXPECT_EQ(h.front_->read(kSectors * 512 - 100, 512, b), -EINVAL);
  EXPECT_TRUE(h.seen().empty());
}

TEST(Blkfront, RequestInFlight_RecordedInTheSplitterLog) {
  Harness h;
  h.serve([](const blkif_request&) { return std::vector<blkif_response>{}; });  // never answer
  std::vector<uint8_t> in(4096, 1);
  auto done = std::async(std::launch::async, [&] { return h.front_->write(8192, in.size(), in.data()); });

  ASSERT_TRUE(wait_for([&] { return h.log_.count(0) == 1; }));
  auto e = h.log_.inflight(0);

  ASSERT_EQ(e.size(), 1u);
  blkif_request logged{};
  std::memcpy(&logged, e[0].req, e[0].len);
  EXPECT_EQ(logged.operation, BLKIF_OP_WRITE);
  EXPECT_EQ(logged.sector_number, 16u);
  h.stop();
  h.shadowd_ = ctl::Channel();  // shadowd gone: the caller gets EIO, not a hang
  EXPECT_EQ(done.get(), -EIO);
}

TEST(Blkfront, QueueLimitReached_FurtherCallersBlockInsteadOfFailing) {
  Harness h(/*queue_limit=*/2);
  h.serve([](const blkif_request&) { return std::vector<blkif_response>{}; });  // an outage: nothing answered
  std::vector<uint8_t> a(4096, 1);
  auto w1 = std::async(std::launch::async, [&] { return h.front_->write(0, 4096, a.data()); });
  auto w2 = std::async(std::launch::async, [&] { return h.front_->write(4096, 4096, a.data()); });
  auto w3 = std::async(std::launch::async, [&] { return h.front_->write(8192, 4096, a.data()); });

  ASSERT_TRUE(wait_for([&] { return h.log_.count(0) == 2; }));
  std::this_thread::sleep_for(50ms);

  EXPECT_EQ(h.log_.count(0), 2u);  // the third waits for a slot
  EXPECT_EQ(w3.wait_for(0ms), std::future_status::timeout);
  h.stop();
  h.shadowd_ = ctl::Channel();  // shadowd gone: every caller returns
  EXPECT_EQ(w1.get(), -EIO);
  EXPECT_EQ(w2.get(), -EIO);
  EXPECT_EQ(w3.get(), -EIO);
}

TEST(Blkfront, DuplicateResponse_ReportedAsFaultAndCompletesNothingTwice) {
  Harness h;
  std::atomic<int> n{0};
  // The first request is answered twice, in place of the second's answer.
  blkif_response first{};
  h.serve([&](const blkif_request& q) {
    auto r = Harness::ok(q);
    if (n++ == 0) {
      first = r[0];
      return std::vector<blkif_response>{};
    }
    return std::vector<blkif_response>{first, first};
  });
  std::vector<uint8_t> a(4096, 1), b(4096, 2);
  auto wa = std::async(std::launch::async, [&] { return h.front_->write(0, 4096, a.data()); });
  ASSERT_TRUE(wait_for([&] { return n.load() == 1; }));
  auto wb = std::async(std::launch::async, [&] { return h.front_->write(4096, 4096, b.data()); });

  ASSERT_TRUE(wait_for([&] { return h.front_->stats().faults == 1; }));
  EXPECT_EQ(wa.get(), 0);
  EXPECT_EQ(wb.wait_for(100ms), std::future_status::timeout) << "the second write completed without its response";
  std::string why;
  for (const auto& m : h.control())
    if (m.type == ctl::MsgType::kDevFault) why = m.get_text();
  EXPECT_NE(why.find("duplicate response"), std::string::npos) << why;

  // Recovery: a new backend; the frontend replays the second write only.
  size_t seen_before = h.seen().size();
  ASSERT_TRUE(h.reconnect());

  EXPECT_EQ(wb.get(), 0);
  auto seen = h.seen();
  ASSERT_EQ(seen.size(), seen_before + 1);
  EXPECT_EQ(seen.back().sector_number, 8u);
  auto st = h.front_->stats();
  EXPECT_EQ(st.completed, st.submitted);
  EXPECT_EQ(st.replayed, 1u);
}

TEST(Blkfront, BackendGone_RequestsWaitAndReplayInSubmissionOrder) {
  Harness h;
  ctl::Msg gone;
  gone.type = ctl::MsgType::kBackendGone;
  gone.b = 9;
  ASSERT_TRUE(h.shadowd_.send(gone));
  std::this_thread::sleep_for(50ms);
  std::vector<uint8_t> a(4096, 1);
  auto w = std::async(std::launch::async, [&] { return h.front_->write(0, 4096, a.data()); });
  ASSERT_TRUE(wait_for([&] { return h.log_.count(0) == 1; }));
  auto f = std::async(std::launch::async, [&] { return h.front_->flush(); });
  ASSERT_TRUE(wait_for([&] { return h.log_.count(0) == 2; }));

  EXPECT_EQ(w.wait_for(50ms), std::future_status::timeout);
  ASSERT_TRUE(h.reconnect());

  EXPECT_EQ(w.get(), 0);
  EXPECT_EQ(f.get(), 0);
  auto seen = h.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].operation, BLKIF_OP_WRITE);
  EXPECT_EQ(seen.back().operation, BLKIF_OP_FLUSH_DISKCACHE);
  EXPECT_EQ(h.front_->stats().completed, h.front_->stats().submitted);
}

}  // namespace
