#include "faults.hpp"

#include <thread>

#include "host.hpp"
#include "workloads.hpp"

namespace sd::tools::demo {

using nlohmann::json;

namespace {
const char* const kKinds[] = {"kill", "segv", "hang", "sigsys", "stall", "bad-id", "bad-prod", "bad-grant", "garbage"};
double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

const std::span<const char* const> kFaultKinds{kKinds};

double fault_due_s(size_t i, long n, long duration_s) {
  return static_cast<double>(i + 1) * static_cast<double>(duration_s) / static_cast<double>(n + 1);
}

std::string fault_kind(const std::vector<std::string>& kinds, size_t i) { return kinds[i % kinds.size()]; }

// ---- vif ---------------------------------------------------------------------------

FollowedFaults::FollowedFaults(std::string sock, std::string domain, std::string label, long n, long duration_s,
                               const std::vector<std::string>& kinds, Clock::time_point t0, Progress& pr,
                               std::vector<std::string>& notes)
    : faults(static_cast<size_t>(n)),
      sock_(std::move(sock)),
      dom_(std::move(domain)),
      label_(std::move(label)),
      t0_(t0),
      pr_(pr),
      notes_(notes) {
  for (size_t i = 0; i < faults.size(); ++i) {
    faults[i].kind = fault_kind(kinds, i);
    faults[i].sched_s = fault_due_s(i, n, duration_s);
  }
}

void FollowedFaults::on_event(const json& ev) {
  if (!ev.is_object() || ev.value("domain", "") != dom_) return;
  std::string type = ev.value("type", "");
  FollowedFault* f = cur_ >= 0 ? &faults[static_cast<size_t>(cur_)] : nullptr;
  if (type == "fault_injected") {
    if (f && !f->anchored) f->anchored = true;
  } else if (type == "domain_died" || type == "fault_detected") {
    if (f && f->anchored && f->died_cause.empty()) f->died_cause = ev.value("cause", "");
  } else if (type == "domain_fenced") {
    fenced = true;
    notes_.push_back(dom_ + " was fenced (restart budget spent)");
    pr_.note(label_ + ": " + dom_ + " fenced: no more restarts");
    if (f) f->note = "fenced";
    cur_ = -1;
  } else if (type == "recovery") {
    if (f && f->anchored && !f->recovered) {
      f->recovered = true;
      f->recovered_s = secs(Clock::now() - t0_);
      f->observed_ms = secs(Clock::now() - f->at) * 1000;
      f->cause = ev.value("cause", f->died_cause);
      f->phases = ev.contains("phases_ms") ? ev["phases_ms"] : json(nullptr);
      ++recovered;
      pr_.note(strf("%s: %.1f s: fault %ld (%s) recovered: %s, total %s ms", label_.c_str(), f->recovered_s,
                    cur_ + 1, f->kind.c_str(), f->cause.c_str(),
                    fmt_ms(f->phases.is_object() ? f->phases.value("total", json()) : json()).c_str()));
      cur_ = -1;
    } else {
      unexpected.push_back(ev);
      pr_.note(label_ + ": recovery not caused by the demo: " + ev.value("cause", std::string("?")));
    }
  }
}

void FollowedFaults::tick(bool may_inject) {
  const double e = secs(Clock::now() - t0_);
  // A fault whose recovery never comes.
  if (cur_ >= 0 && secs(Clock::now() - faults[static_cast<size_t>(cur_)].at) > kRecoveryTimeoutS) {
    faults[static_cast<size_t>(cur_)].note = strf("no recovery within %.0f s", kRecoveryTimeoutS);
    pr_.note(strf("%s: fault %ld: no recovery within %.0f s", label_.c_str(), cur_ + 1, kRecoveryTimeoutS));
    cur_ = -1;
  }
  // The next fault: at its time, after the previous one's recovery.
  if (cur_ < 0 && next < faults.size() && e >= faults[next].sched_s && Clock::now() >= retry_at_ && may_inject &&
      !fenced) {
    FollowedFault& f = faults[next];
    auto sent = Clock::now();
    std::string why;
    auto r = ask(sock_, {{"cmd", "inject-fault"}, {"domain", dom_}, {"kind", f.kind}}, &why);
    if (r) {
      f.at = sent;
      f.at_s = secs(sent - t0_);
      cur_ = static_cast<long>(next);
      ++next;
      pr_.note(strf("%s: %.1f s: fault %zu/%zu: %s into %s", label_.c_str(), f.at_s, next, faults.size(),
                    f.kind.c_str(), dom_.c_str()));
    } else if (why.find("not running") != std::string::npos && e < f.sched_s + kRecoveryTimeoutS) {
      retry_at_ = Clock::now() + std::chrono::milliseconds(50);  // between incarnations: try again
    } else {
      f.note = "not injected: " + why;
      pr_.note(strf("%s: fault %zu (%s) not injected: %s", label_.c_str(), next + 1, f.kind.c_str(), why.c_str()));
      ++next;
    }
  }
}

void FollowedFaults::not_injected(bool events_open, bool interrupted, const std::string& app_ended) {
  for (size_t i = next; i < faults.size(); ++i)
    if (faults[i].note.empty())
      faults[i].note = fenced         ? "not injected: " + dom_ + " is fenced"
                       : !events_open ? std::string("not injected: lost the events stream")
                       : interrupted  ? std::string("not injected: interrupted")
                                      : "not injected: " + app_ended;
}

bool FollowedFaults::awaiting() const {
  return cur_ >= 0 && secs(Clock::now() - faults[static_cast<size_t>(cur_)].at) < kRecoveryTimeoutS;
}

void FollowedFaults::give_up(bool interrupted) {
  if (cur_ >= 0 && faults[static_cast<size_t>(cur_)].note.empty())
    faults[static_cast<size_t>(cur_)].note = interrupted ? "interrupted before recovery" : "no recovery seen";
}

// ---- vsnd, vbd ---------------------------------------------------------------------

PolledSchedule polled_schedule(const std::string& sock, const std::string& dom, const Opts& o) {
  return {.sock = sock,
          .domain = dom,
          .label = "demo " + o.classes.front(),
          .n = o.faults,
          .duration_s = o.duration,
          .kinds = o.kinds};
}

std::vector<PolledFault> run_polled_faults(const PolledSchedule& s, Progress& pr) {
  // The events after `seq` about the domain (the last 200 events shadowd keeps).
  auto events_after = [&](uint64_t seq) {
    std::vector<json> out;
    if (auto ev = ask(s.sock, {{"cmd", "events"}, {"n", 200}}))
      for (auto& e : (*ev)["events"])
        if (e.value("seq", uint64_t{0}) > seq && e.value("domain", "") == s.domain) out.push_back(e);
    return out;
  };
  auto last_seq = [&] {
    auto ev = ask(s.sock, {{"cmd", "events"}, {"n", 1}});
    return ev && !(*ev)["events"].empty() ? (*ev)["events"].back().value("seq", uint64_t{0}) : uint64_t{0};
  };
  std::vector<PolledFault> faults(static_cast<size_t>(s.n));
  for (size_t i = 0; i < faults.size(); ++i) {
    PolledFault& f = faults[i];
    f.kind = fault_kind(s.kinds, i);
    if (s.expand_garbage && f.kind == "garbage") {
      static const char* const kGarbage[] = {"bad-id", "bad-prod", "bad-grant"};
      f.kind = kGarbage[i % 3];
    }
    double when = fault_due_s(i, s.n, s.duration_s);
    while (s.elapsed() < when && !s.app_done()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (s.app_done()) break;
    if (s.on_inject) s.on_inject(i);
    const uint64_t before = last_seq();
    f.at_s = s.elapsed();
    std::string why;
    if (!ask(s.sock, {{"cmd", "inject-fault"}, {"domain", s.domain}, {"kind", f.kind}}, &why)) {
      f.cause = "not injected: " + why;
      continue;
    }
    // This fault's recovery: the first recovery event of the domain after it went in.
    bool fenced = false;
    auto until = Clock::now() + std::chrono::duration<double>(kRecoveryTimeoutS);
    while (!f.recovered && !fenced && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      for (auto& e : events_after(before))
        if (e.value("type", "") == "recovery") {
          f.recovered = true;
          f.cause = e.value("cause", "");
          f.phases = e["phases_ms"];
          f.event = e;
          break;
        } else if (e.value("type", "") == "domain_fenced") {
          fenced = true;
          f.cause = s.domain + " fenced (restart budget spent)";
        }
    }
    pr.note(strf("%s: %.1f s: fault %zu (%s): %s", s.label.c_str(), f.at_s, i + 1, f.kind.c_str(),
                 f.recovered || fenced ? f.cause.c_str() : "no recovery seen"));
    if (fenced) break;
  }
  return faults;
}

}  // namespace sd::tools::demo

