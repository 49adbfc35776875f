// Replay cost of a vif's config state against the number of config changes
// the guest made. The splitter log keeps the state compacted (the newest value
// of each setting), so what recovery replays is the same size after one change
// or a million. Then the log's cost per request on the frontend's data path.
// Prints tables; asserts nothing.
#include <chrono>
#include <cstdio>

#include "sd/core/control_channel.hpp"
#include "sd/core/netif.hpp"
#include "sd/core/splitter_log.hpp"

int main() {
  using Clock = std::chrono::steady_clock;
  std::printf("vif config replay cost vs changes made (splitter log, compacted state)\n");
  std::printf("%12s %14s %16s %18s\n", "changes", "record (ms)", "replay (us)", "replayed bytes");
  for (long n : {1L, 1000L, 1000000L}) {
    auto log = sd::shadow::SplitterLog::create(512);
    if (!log) return 1;
    sd::netif::VifConfig c{};
    auto t0 = Clock::now();
    for (long i = 0; i < n; ++i) {
      // What the frontend does per change: bump MTU / flags, store the newest state.
      c.mtu = static_cast<uint16_t>(1280 + i % 200);
      c.promisc = static_cast<uint8_t>(i & 1);
      c.generation = static_cast<uint64_t>(i + 1);
      log->set_config(&c, sizeof(c));
    }
    auto t1 = Clock::now();
    // What recovery does: read the state once and build the attach message.
    sd::netif::VifConfig got{};
    size_t bytes = log->get_config(&got, sizeof(got));
    sd::ctl::Msg m;
    m.type = sd::ctl::MsgType::kDevAttach;
    m.set_payload(got);
    auto t2 = Clock::now();
    std::printf("%12ld %14.2f %16.2f %18zu%s\n", n, std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::micro>(t2 - t1).count(), bytes,
                got.generation == static_cast<uint64_t>(n) ? "" : "  (state mismatch!)");
  }

  // What the frontend pays per request on its data path: record when it
  // posts, complete when the response comes (this stamps the ring's last
  // response and service time in the header), against the log switched off.
  std::printf("\nsplitter log per request: record + complete (a netif tx request), log on vs off\n");
  std::printf("%8s %14s\n", "log", "ns / request");
  for (bool on : {true, false}) {
    auto log = sd::shadow::SplitterLog::create(256);
    if (!log) return 1;
    log->set_enabled(on);
    netif_tx_request req{};
    constexpr long kRequests = 5000000;
    auto t0 = Clock::now();
    for (long i = 0; i < kRequests; ++i) {
      auto slot = static_cast<uint32_t>(i % 256);
      req.id = static_cast<uint16_t>(slot);
      log->record(slot, 0, &req, sizeof(req));
      log->complete(slot);
    }
    auto t1 = Clock::now();
    std::printf("%8s %14.1f\n", on ? "on" : "off",
                std::chrono::duration<double, std::nano>(t1 - t0).count() / kRequests);
  }
  return 0;
}
