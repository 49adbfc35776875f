// What the demo prints: the progress on stderr while it runs, and the report
// at the end (a table with one row per fault, then the application's
// verdict; with --json the table goes to stderr and one JSON object to stdout).
// The fault table and the JSON summary are FaultSchedule's (faults.hpp).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace sd::tools::demo {

using Clock = std::chrono::steady_clock;

struct Progress {
  bool tty = ::isatty(2) == 1;
  bool drawn = false;
  Clock::time_point last{};

  void clear();
  // A line that stays (a fault injected, a recovery, a warning).
  void note(const std::string& s);
  // The status line: in place on a terminal, every 5 s otherwise.
  void status(const std::string& s, bool force = false);
};

std::string strf(const char* f, ...) __attribute__((format(printf, 1, 2)));
// A number of ms as "12.34", anything else as "-".
std::string fmt_ms(const nlohmann::json& v);
// The total of a recovery event's phases_ms, as fmt_ms.
std::string fmt_total(const nlohmann::json& phases);

// Where the table goes: stdout, or stderr when stdout carries the JSON.
inline FILE* table_stream(bool json_out) { return json_out ? stderr : stdout; }
// The last line: "recovered N/M faults; transparent: ...".
void print_verdict(FILE* out, size_t recovered, size_t faults, bool transparent, const char* yes_because);
void print_summary(const nlohmann::json& summary);

}  // namespace sd::tools::demo
