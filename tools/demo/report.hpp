// What the demo prints: the progress on stderr while it runs, and the report
// at the end (a table with one row per fault, then the application's
// verdict; with --json the table goes to stderr and one JSON object to stdout).
#pragma once

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace sd::tools::demo {

using Clock = std::chrono::steady_clock;

struct Progress {
  bool tty;
  bool drawn = false;
  Clock::time_point last{};

  Progress();
  void clear();
  // A line that stays (a fault injected, a recovery, a warning).
  void note(const std::string& s);
  // The status line: in place on a terminal, every 5 s otherwise.
  void status(const std::string& s, bool force = false);
};

std::string strf(const char* f, ...) __attribute__((format(printf, 1, 2)));
// A number of ms as "12.34", anything else as "-".
std::string fmt_ms(const nlohmann::json& v);

// Where the table goes: stdout, or stderr when stdout carries the JSON.
inline FILE* table_stream(bool json_out) { return json_out ? stderr : stdout; }
// The columns every demo's table starts with: the fault's number, kind,
// time, and the phases of shadowd's recovery event (detect, spawn, the
// slowest device's replay and resume, devices: Ready to the last device
// serving, total). Each workload appends its own columns.
std::string phases_head();
std::string phases_row(size_t n, const std::string& kind, const std::string& at, const nlohmann::json& phases);
// The last line: "recovered N/M faults; transparent: ...".
void print_verdict(FILE* out, size_t recovered, size_t faults, bool transparent, const char* yes_because);

// The JSON summary's keys every workload has: the driver domain, the faults,
// and `apps`, one per guest device the workload ran on (each with its
// "guest", "device" and what the application reported); the workload adds
// its own.
nlohmann::json summary(const nlohmann::json& classes, long duration, const std::string& domain,
                       nlohmann::json faults, nlohmann::json apps, size_t recovered, bool transparent);
void print_summary(const nlohmann::json& summary);

}  // namespace sd::tools::demo
