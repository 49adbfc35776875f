#include "faults.hpp"

#include <poll.h>

#include <algorithm>

#include "host.hpp"

namespace sd::tools::demo {

using nlohmann::json;

namespace {
const char* const kKinds[] = {"kill", "segv", "hang", "sigsys", "stall", "bad-id", "bad-prod", "bad-grant", "garbage"};
double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

const std::span<const char* const> kFaultKinds{kKinds};

std::string Fault::cause_text() const {
  std::string c = recovered ? cause : (!died_cause.empty() ? died_cause + "; " : "") + note;
  if (recovered && !note.empty()) c += " (" + note + ")";
  return c.empty() ? "-" : c;
}

FaultSchedule::FaultSchedule(std::string sock, std::string dom, const Opts& o, Progress& pr, bool expand_garbage)
    : faults(static_cast<size_t>(o.faults)),
      sock_(std::move(sock)),
      dom_(std::move(dom)),
      label_("demo " + o.classes.front()),
      o_(o),
      pr_(pr) {
  static const char* const kGarbage[] = {"bad-id", "bad-prod", "bad-grant"};
  for (size_t i = 0; i < faults.size(); ++i) {
    faults[i].kind = o.kinds[i % o.kinds.size()];
    if (expand_garbage && faults[i].kind == "garbage") faults[i].kind = kGarbage[i % 3];
  }
}

bool FaultSchedule::follow(std::string* why) {
  auto r = request(sock_, {{"cmd", "events"}, {"n", 1}, {"follow", true}}, &events_, 10);
  if (!r) *why = "cannot follow shadowd's events: " + r.error().text;
  return r.has_value();
}

void FaultSchedule::on_event(const json& ev) {
  if (!ev.is_object() || ev.value("domain", "") != dom_) return;
  std::string type = ev.value("type", "");
  Fault* f = cur_ >= 0 ? &faults[static_cast<size_t>(cur_)] : nullptr;
  if (type == "fault_injected") {
    if (f) f->anchored = true;
  } else if (type == "domain_died" || type == "fault_detected") {
    if (f && f->anchored && f->died_cause.empty()) f->died_cause = ev.value("cause", "");
  } else if (type == "domain_fenced") {
    fenced = true;
    notes.push_back(dom_ + " was fenced (restart budget spent)");
    pr_.note(label_ + ": " + dom_ + " fenced: no more restarts");
    if (f) f->note = "fenced";
    cur_ = -1;
  } else if (type == "recovery") {
    if (f && f->anchored && !f->recovered) {
      f->recovered = true;
      f->observed_ms = secs(Clock::now() - f->at) * 1000;
      f->cause = ev.value("cause", f->died_cause);
      f->phases = ev.contains("phases_ms") ? ev["phases_ms"] : json(nullptr);
      f->event = ev;
      ++recovered;
      pr_.note(strf("%s: %.1f s: fault %ld (%s) recovered: %s, total %s ms", label_.c_str(), elapsed(), cur_ + 1,
                    f->kind.c_str(), f->cause.c_str(), fmt_total(f->phases).c_str()));
      cur_ = -1;
    } else {
      unexpected.push_back(ev);
      pr_.note(label_ + ": recovery not caused by the demo: " + ev.value("cause", std::string("?")));
    }
  }
}

void FaultSchedule::tick() {
  const double e = elapsed();
  // The next fault is due at (i+1)*S/(n+1) s, and after the previous one's recovery.
  const double due = double(next + 1) * double(o_.duration) / double(o_.faults + 1);
  if (cur_ >= 0 && secs(Clock::now() - faults[static_cast<size_t>(cur_)].at) > kRecoveryTimeoutS) {
    faults[static_cast<size_t>(cur_)].note = strf("no recovery within %.0f s", kRecoveryTimeoutS);
    pr_.note(strf("%s: fault %ld: no recovery within %.0f s", label_.c_str(), cur_ + 1, kRecoveryTimeoutS));
    cur_ = -1;
  }
  if (cur_ >= 0 || next >= faults.size() || e < due || Clock::now() < retry_at_ || !events_open || fenced) return;
  Fault& f = faults[next];
  if (on_inject) on_inject(next);
  auto sent = Clock::now();
  std::string why;
  if (ask(sock_, {{"cmd", "inject-fault"}, {"domain", dom_}, {"kind", f.kind}}, &why)) {
    f.at = sent;
    f.at_s = secs(sent - t0_);
    cur_ = static_cast<long>(next++);
    pr_.note(strf("%s: %.1f s: fault %zu/%zu: %s into %s", label_.c_str(), f.at_s, next, faults.size(),
                  f.kind.c_str(), dom_.c_str()));
  } else if (why.find("not running") != std::string::npos && e < due + kRecoveryTimeoutS) {
    retry_at_ = Clock::now() + std::chrono::milliseconds(50);  // between incarnations: try again
  } else {
    f.note = "not injected: " + why;
    pr_.note(strf("%s: fault %zu (%s) not injected: %s", label_.c_str(), next + 1, f.kind.c_str(), why.c_str()));
    ++next;
  }
}

void FaultSchedule::pump(int timeout_ms) {
  pollfd p{events_.fd(), POLLIN, 0};
  ::poll(&p, events_open ? 1 : 0, timeout_ms);
  if (!events_open) return;
  if (!events_.fill()) {
    events_open = false;
    notes.push_back("lost the events stream (shadowd stopped?)");
    pr_.note(label_ + ": lost the events stream from shadowd");
  }
  while (auto m = events_.take())
    if (!m->is_discarded() && m->contains("event")) on_event((*m)["event"]);
}

void FaultSchedule::run(Clock::time_point t0, const std::string& app, const std::function<bool()>& app_done,
                        const std::function<void()>& stop_app) {
  t0_ = t0;
  const double d = static_cast<double>(o_.duration);
  auto status = [&](bool force) {
    double e = elapsed();
    std::string over = !app_done() && e > d + 1 ? strf(" (%s %.0f s over its run time)", app.c_str(), e - d) : "";
    pr_.status(strf("%s: %.1f/%ld s, faults %zu/%zu, recovered %zu%s", label_.c_str(), std::min(e, d), o_.duration,
                    next, faults.size(), recovered, over.c_str()),
               force);
  };
  while (!app_done()) {
    pump(100);
    if (demo::interrupted()) {
      interrupted = true;
      notes.push_back("interrupted");
      pr_.note(label_ + ": interrupted; stopping " + app);
    } else if (elapsed() > d + 30) {  // the application gets this long, then is stopped
      overtime = true;
    }
    if (interrupted || overtime) {
      app_end_s = elapsed();
      stop_app();
      break;
    }
    tick();
    status(false);
  }
  app_end_s = elapsed();
  for (size_t i = next; i < faults.size(); ++i)
    if (faults[i].note.empty())
      faults[i].note = "not injected: " + (fenced         ? dom_ + " is fenced"
                                           : !events_open ? std::string("lost the events stream")
                                           : interrupted  ? std::string("interrupted")
                                                          : app + " ended first");
  // The last fault's recovery, if it is still under way.
  auto awaiting = [&] {
    return cur_ >= 0 && secs(Clock::now() - faults[static_cast<size_t>(cur_)].at) < kRecoveryTimeoutS;
  };
  while (awaiting() && events_open && !demo::interrupted()) {
    pump(100);
    status(false);
  }
  if (cur_ >= 0 && faults[static_cast<size_t>(cur_)].note.empty())
    faults[static_cast<size_t>(cur_)].note = demo::interrupted() ? "interrupted before recovery" : "no recovery seen";
  status(true);
  pr_.clear();
}

}  // namespace sd::tools::demo
