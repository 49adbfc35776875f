#include "report.hpp"

#include <unistd.h>

#include <cstdarg>

namespace sd::tools::demo {

using nlohmann::json;

Progress::Progress() : tty(::isatty(2) == 1) {}

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

std::string fmt_ms(const json& v) {
  if (!v.is_number()) return "-";
  return strf("%.2f", v.get<double>());
}

std::string phases_head() {
  return strf("%3s  %-9s %6s  %8s %8s %8s %8s %8s %8s", "#", "kind", "at s", "detect", "spawn", "replay", "resume",
              "devices", "total");
}

std::string phases_row(size_t n, const std::string& kind, const std::string& at, const json& phases) {
  auto ph = [&](const char* k) { return fmt_ms(phases.is_object() && phases.contains(k) ? phases[k] : json()); };
  return strf("%3zu  %-9s %6s  %8s %8s %8s %8s %8s %8s", n, kind.c_str(), at.c_str(), ph("detect").c_str(),
              ph("spawn").c_str(), ph("replay").c_str(), ph("resume").c_str(), ph("devices").c_str(),
              ph("total").c_str());
}

void print_verdict(FILE* out, size_t recovered, size_t faults, bool transparent, const char* yes_because) {
  std::fprintf(out, "recovered %zu/%zu faults; transparent: %s\n", recovered, faults,
               transparent ? strf("yes (%s)", yes_because).c_str() : "NO");
}

json summary(const json& classes, long duration, const std::string& domain, json faults, json apps,
             size_t recovered, bool transparent) {
  return {{"classes", classes},          {"duration_s", duration},     {"domain", domain},
          {"faults", std::move(faults)}, {"apps", std::move(apps)},    {"recovered", recovered},
          {"transparent", transparent}};
}

void print_summary(const json& summary) {
  std::printf("%s\n", summary.dump().c_str());
  std::fflush(stdout);
}

}  // namespace sd::tools::demo
