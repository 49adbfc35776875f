// The fault schedule: which kind goes into the driver domain when, one at a
// time (the next waits for its time and for the previous one's recovery),
// and what shadowd said about each, followed on its events stream while the
// workload's application runs; and the parts of the report about them.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "control_client.hpp"
#include "demo.hpp"
#include "report.hpp"

namespace sd::tools::demo {

// The kinds --fault-kinds takes ("garbage" = one of the bad-* in turn).
extern const std::span<const char* const> kFaultKinds;
constexpr double kRecoveryTimeoutS = 20;  // longer than a start timeout (10 s) plus backoff

struct Fault {
  std::string kind;
  double at_s = -1;  // injected at (s after the application started); -1: not injected
  Clock::time_point at;
  double observed_ms = -1;  // inject request sent -> recovery event received, as the demo saw it
  bool anchored = false;    // its fault_injected event has been seen
  bool recovered = false;
  std::string cause, died_cause, note;
  nlohmann::json phases = nullptr, event = nullptr;  // shadowd's recovery event and its phases_ms
  // The table's cause column: shadowd's cause, or why there is none.
  std::string cause_text() const;
};

class FaultSchedule {
 public:
  // The faults of `o` into driver domain `dom`; expand_garbage: "garbage"
  // becomes bad-id, bad-prod, bad-grant in turn here rather than in shadowd.
  FaultSchedule(std::string sock, std::string dom, const Opts& o, Progress& pr, bool expand_garbage = false);
  // Follows shadowd's events from now on; false (and *why) if it cannot.
  bool follow(std::string* why);
  // Injects the faults from t0 on while the application (`app`, for the
  // progress line) runs, until app_done(), an interruption or its run time
  // plus 30 s (then stop_app()), then waits for the last recovery.
  void run(Clock::time_point t0, const std::string& app, const std::function<bool()>& app_done,
           const std::function<void()>& stop_app);
  std::function<void(size_t)> on_inject;  // just before fault i goes in

  // The fault table: the phases, the workload's columns (`head`, `cells(i)`), the cause.
  void print_table(FILE* out, const std::string& head, const std::function<std::string(size_t)>& cells) const;
  // Recoveries the demo did not cause, and the notes.
  void print_notes(FILE* out) const;
  // The JSON summary; add_fault(i, j) adds the workload's figures to fault i.
  nlohmann::json summary(const nlohmann::json& apps, bool transparent,
                         const std::function<void(size_t, nlohmann::json&)>& add_fault) const;

  std::vector<Fault> faults;
  size_t next = 0;  // next fault to inject
  size_t recovered = 0;
  std::vector<nlohmann::json> unexpected;  // recoveries no injected fault accounts for
  std::vector<std::string> notes;          // what the report says at its end
  bool fenced = false, events_open = true, interrupted = false, overtime = false;
  double app_end_s = 0;  // when the application ended (s after t0)

 private:
  void on_event(const nlohmann::json& ev);
  void tick();
  void pump(int timeout_ms);
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }

  std::string sock_, dom_, label_;
  const Opts& o_;
  Progress& pr_;
  Conn events_;
  Clock::time_point t0_;
  long cur_ = -1;  // fault waiting for its recovery
  Clock::time_point retry_at_{};
};

}  // namespace sd::tools::demo
