// The fault schedule: which kind goes into the driver domain when, one at a
// time (the next waits for its time and for the previous one's recovery),
// and what shadowd said about each.
//
// Two ways to follow a fault, both kept from the per-class demos they came
// from: FollowedFaults (vif) reads shadowd's events stream in the caller's
// poll loop and times each recovery as the demo saw it; run_polled_faults
// (vsnd, vbd) blocks, polling shadowd's recent events for the domain's first
// recovery event after the fault went in (by the events' seq, so a slow
// recovery is never given the previous fault's event).
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "report.hpp"

namespace sd::tools::demo {

// The kinds --fault-kinds takes ("garbage" = one of the bad-* in turn).
extern const std::span<const char* const> kFaultKinds;
constexpr double kRecoveryTimeoutS = 20;  // longer than a start timeout (10 s) plus backoff

// When the i-th of n faults is due: (i+1)*S/(n+1) s after the application started.
double fault_due_s(size_t i, long n, long duration_s);
// The i-th fault's kind, round-robin over `kinds`.
std::string fault_kind(const std::vector<std::string>& kinds, size_t i);

// ---- vif: the events stream --------------------------------------------------------

struct FollowedFault {
  std::string kind;
  double sched_s = 0;
  double at_s = -1;  // injected at (s after the application started); -1: not injected
  Clock::time_point at;
  double observed_ms = -1;  // inject request sent -> recovery event received, as the demo saw it
  bool anchored = false;    // its fault_injected event has been seen
  bool recovered = false;
  double recovered_s = -1;
  std::string cause, died_cause, note;
  nlohmann::json phases = nullptr;
  // Per guest: the application's report for the interval the fault hit.
  nlohmann::json intervals = nlohmann::json::object();
};

class FollowedFaults {
 public:
  // `label` prefixes what goes to `pr` ("demo vif"); `notes` collects what
  // the report says at its end.
  // the application started at t0.
  FollowedFaults(std::string sock, std::string domain, std::string label, long n, long duration_s,
                 const std::vector<std::string>& kinds, Clock::time_point t0, Progress& pr,
                 std::vector<std::string>& notes);
  // One event from the stream (`{"event": ...}`'s value).
  void on_event(const nlohmann::json& ev);
  // One turn of the caller's loop: a recovery that never comes is given up,
  // the next fault is injected when due (and `may_inject`).
  void tick(bool may_inject);
  // The application has ended: the faults not injected say why.
  void not_injected(bool events_open, bool interrupted, const std::string& app_ended);
  // The fault whose recovery is still awaited, if it is still worth waiting for.
  bool awaiting() const;
  // Stop waiting for it.
  void give_up(bool interrupted);

  std::vector<FollowedFault> faults;
  size_t next = 0;  // next fault to inject
  size_t recovered = 0;
  std::vector<nlohmann::json> unexpected;  // recoveries no injected fault accounts for
  bool fenced = false;

 private:
  std::string sock_, dom_, label_;
  Clock::time_point t0_;
  Progress& pr_;
  std::vector<std::string>& notes_;
  long cur_ = -1;  // fault waiting for its recovery
  Clock::time_point retry_at_{};
};

// ---- vsnd, vbd: polled ---------------------------------------------------------------

struct PolledFault {
  std::string kind, cause;
  double at_s = -1;
  bool recovered = false;
  nlohmann::json phases = nullptr;
  nlohmann::json event = nullptr;  // shadowd's recovery event
};

struct PolledSchedule {
  std::string sock, domain, label;  // label: "demo vsnd"
  long n = 0, duration_s = 0;
  std::vector<std::string> kinds;
  bool expand_garbage = false;  // "garbage" becomes bad-id, bad-prod, bad-grant in turn
  std::function<double()> elapsed;   // s since the application started
  std::function<bool()> app_done;    // the application has ended: no more faults
  std::function<void(size_t)> on_inject = nullptr;  // just before fault i goes in
};

// Injects the faults on this thread while the application runs on its own.
std::vector<PolledFault> run_polled_faults(const PolledSchedule& s, Progress& pr);

}  // namespace sd::tools::demo
