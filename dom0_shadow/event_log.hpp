// shadowd's event log: every fault, restart and recovery as one JSON object,
// appended to a file (JSON lines) and kept in memory for `shadowctl events`.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

namespace sd::dom0 {

class EventLog {
 public:
  using Subscriber = std::function<void(const nlohmann::json&)>;
  explicit EventLog(std::optional<std::filesystem::path> file, size_t keep = 1000);

  // Stamps the event with "ts" (unix ms) and "seq", stores and publishes it.
  void emit(nlohmann::json ev);
  // The newest `n` events, oldest first.
  std::vector<nlohmann::json> recent(size_t n) const;
  uint64_t subscribe(Subscriber s);
  void unsubscribe(uint64_t id);

 private:
  std::ofstream out_;
  size_t keep_;
  uint64_t seq_ = 0;
  std::deque<nlohmann::json> recent_;
  std::map<uint64_t, Subscriber> subs_;
  uint64_t next_sub_ = 1;
};

// Milliseconds between two steady-clock points, as a double (for phase timings).
inline double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace sd::dom0
