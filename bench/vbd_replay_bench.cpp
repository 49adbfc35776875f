// Replay cost of a vbd against the number of requests in flight: what the
// frontend does between kReconnect and kReconnected (blkif::requeue: read
// the splitter log, order the in-flight table, reset the ring, put every
// request back, publish). The shipped ring is one page (32 requests); the
// depths beyond use a four-page ring (128 requests, blkif's
// max-ring-page-order 2) to show how the cost grows. Prints a table;
// asserts nothing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "sd/core/blkif.hpp"
#include "sd/core/splitter_log.hpp"

int main() {
  using Clock = std::chrono::steady_clock;
  constexpr size_t kPages = 4, kCap = 128, kReps = 2000;
  void* mem = std::aligned_alloc(4096, kPages * 4096);
  auto ring = sd::ring::FrontRing<sd::blkif::Traits>::attach(mem, kPages * 4096, true);
  if (!ring || ring->size() < kCap) return 1;
  std::printf("vbd replay cost vs requests in flight (blkif::requeue; %zu repetitions each)\n", kReps);
  std::printf("%10s %12s %12s %14s %10s\n", "inflight", "median (us)", "p99 (us)", "per request (ns)", "requeued");
  for (size_t n : {1, 2, 4, 8, 16, 32, 64, 128}) {
    auto log = sd::shadow::SplitterLog::create(kCap);
    if (!log) return 1;
    sd::blkif::InflightTable table(kCap);
    for (size_t i = 0; i < n; ++i) {
      blkif_request r{};
      r.id = i;
      if (i % 8 == 7) {
        r.operation = BLKIF_OP_FLUSH_DISKCACHE;
      } else {
        r.operation = BLKIF_OP_WRITE;
        r.sector_number = i * 8;
        r.nr_segments = 1;
        r.seg[0] = {sd::blkif::data_ref(i % sd::blkif::kRingSize, 0), 0, 7};
      }
      (void)table.add(r);
      log->record(static_cast<uint32_t>(i), 0, &r, sd::blkif::kLoggedReq);
    }
    std::vector<double> us;
    uint32_t requeued = 0;
    for (size_t k = 0; k < kReps; ++k) {
      auto t0 = Clock::now();
      requeued = sd::blkif::requeue(*ring, table, *log);
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    double med = us[us.size() / 2], p99 = us[us.size() * 99 / 100];
    std::printf("%10zu %12.2f %12.2f %14.0f %10u\n", n, med, p99, med * 1000.0 / static_cast<double>(n), requeued);
  }
  std::free(mem);
  return 0;
}
