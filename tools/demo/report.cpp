#include "report.hpp"

#include <cmath>
#include <cstdarg>

#include "faults.hpp"

namespace sd::tools::demo {

using nlohmann::json;

// ms or s to the thousandth; null when never measured (negative).
static json rounded(double v) { return v >= 0 ? json(std::round(v * 1000) / 1000) : json(nullptr); }

void Progress::clear() {
  if (drawn) std::fprintf(stderr, "\r\033[K");
  drawn = false;
}

void Progress::note(const std::string& s) {
  clear();
  std::fprintf(stderr, "%s\n", s.c_str());
}

void Progress::status(const std::string& s, bool force) {
  auto now = Clock::now();
  if (tty) {
    if (!force && now - last < std::chrono::milliseconds(200)) return;
    std::fprintf(stderr, "\r%s\033[K", s.c_str());
    drawn = true;
  } else {
    if (!force && now - last < std::chrono::seconds(5)) return;
    std::fprintf(stderr, "%s\n", s.c_str());
  }
  last = now;
}

std::string strf(const char* f, ...) {
  char b[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(b, sizeof(b), f, ap);
  va_end(ap);
  return b;
}

std::string fmt_ms(const json& v) { return v.is_number() ? strf("%.2f", v.get<double>()) : "-"; }

std::string fmt_total(const json& phases) {
  return fmt_ms(phases.is_object() ? phases.value("total", json()) : json());
}

void print_verdict(FILE* out, size_t recovered, size_t faults, bool transparent, const char* yes_because) {
  std::fprintf(out, "recovered %zu/%zu faults; transparent: %s\n", recovered, faults,
               transparent ? strf("yes (%s)", yes_because).c_str() : "NO");
}

void print_summary(const json& summary) {
  std::printf("%s\n", summary.dump().c_str());
  std::fflush(stdout);
}

// Each row: the fault's number, kind, time, and the phases of shadowd's
// recovery event (detect, spawn, the slowest device's replay and resume,
// devices: Ready to the last device serving, total), then the workload's.
void FaultSchedule::print_table(FILE* out, const std::string& head,
                                const std::function<std::string(size_t)>& cells) const {
  static constexpr char kRow[] = "%3s  %-9s %6s  %8s %8s %8s %8s %8s %8s%s  %s\n";
  std::fputc('\n', out);
  std::fprintf(out, kRow, "#", "kind", "at s", "detect", "spawn", "replay", "resume", "devices", "total", head.c_str(),
               "cause as detected");
  for (size_t i = 0; i < faults.size(); ++i) {
    const Fault& f = faults[i];
    auto ph = [&](const char* k) { return fmt_ms(f.phases.is_object() ? f.phases.value(k, json()) : json()); };
    std::fprintf(out, kRow, std::to_string(i + 1).c_str(), f.kind.c_str(),
                 f.at_s >= 0 ? strf("%.2f", f.at_s).c_str() : "-", ph("detect").c_str(), ph("spawn").c_str(),
                 ph("replay").c_str(), ph("resume").c_str(), ph("devices").c_str(), ph("total").c_str(),
                 cells(i).c_str(), f.cause_text().c_str());
  }
  if (faults.empty()) std::fprintf(out, "  (no faults injected)\n");
}

void FaultSchedule::print_notes(FILE* out) const {
  if (!unexpected.empty()) {
    std::fprintf(out, "recoveries not caused by the demo: %zu\n", unexpected.size());
    for (auto& ev : unexpected)
      std::fprintf(out, "  cause %s, total %s ms\n", ev.value("cause", std::string("?")).c_str(),
                   fmt_total(ev.value("phases_ms", json())).c_str());
  }
  for (auto& n : notes) std::fprintf(out, "note: %s\n", n.c_str());
}

json FaultSchedule::summary(const json& apps, bool transparent,
                            const std::function<void(size_t, json&)>& add_fault) const {
  json jf = json::array(), unexp = json::array();
  for (size_t i = 0; i < faults.size(); ++i) {
    const Fault& f = faults[i];
    json j{{"n", i + 1},
           {"kind", f.kind},
           {"at_s", rounded(f.at_s)},
           {"recovered", f.recovered},
           {"cause", f.recovered ? json(f.cause) : (f.died_cause.empty() ? json(nullptr) : json(f.died_cause))},
           {"phases_ms", f.phases},
           {"observed_ms", rounded(f.observed_ms)}};
    if (!f.note.empty()) j["note"] = f.note;
    add_fault(i, j);
    jf.push_back(j);
  }
  for (auto& ev : unexpected)
    unexp.push_back({{"cause", ev.value("cause", "")}, {"phases_ms", ev.value("phases_ms", json())}});
  return {{"classes", o_.classes}, {"duration_s", o_.duration}, {"domain", dom_}, {"faults", jf}, {"apps", apps},
          {"recovered", recovered}, {"transparent", transparent}, {"app_run_s", rounded(app_end_s)},
          {"unexpected_recoveries", unexp}, {"notes", notes}};
}

}  // namespace sd::tools::demo
