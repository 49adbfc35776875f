// `shadowctl demo --classes vif`: iperf3 from each guest's netns to the wire
// netns (the outside world), every guest whose vif the net driver domain
// serves at once, each to its own server port, while faults are injected
// into that driver domain.
//
// One thread, one poll loop: the events-follow connection to shadowd, the
// iperf3 clients' and servers' output, the fault schedule and the progress
// line. Faults are injected one at a time: the next waits for its scheduled
// time and for the previous one's recovery event.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>

#include "control_client.hpp"
#include "faults.hpp"
#include "host.hpp"
#include "process.hpp"
#include "report.hpp"
#include "workloads.hpp"

namespace sd::tools::demo {

using nlohmann::json;

namespace {

volatile sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// What the demo needs to know about one vif.
struct Vif {
  std::string device, guest, backend, guest_ns, guest_ip, wire_ns, wire_ip;
};

std::string strip_prefix_len(const std::string& a) { return a.substr(0, a.find('/')); }

// Every vif with a local topology on the driver domain of the first one,
// once all of them and their driver domain are up; nullopt (with why) while
// not.
std::optional<std::vector<Vif>> ready_vifs(const std::string& sock, std::string* why) {
  auto devs = ask(sock, {{"cmd", "devices"}}, why);
  if (!devs) return std::nullopt;
  std::vector<Vif> vifs;
  for (auto& d : (*devs)["devices"]) {
    if (d.value("class", "") != "vif" || !d.contains("detail") || !d["detail"].is_object() ||
        d["detail"].value("guest_ns", "").empty() ||
        (!vifs.empty() && d.value("backend", "") != vifs.front().backend))
      continue;
    const json& det = d["detail"];
    Vif v{d.value("device", ""),
          guest_of(d),
          d.value("backend", ""),
          det.value("guest_ns", ""),
          strip_prefix_len(det.value("guest_addr", "")),
          det.value("wire_ns", ""),
          strip_prefix_len(det.value("wire_addr", ""))};
    if (v.wire_ns.empty() || v.wire_ip.empty() || v.guest_ip.empty()) {
      *why = v.device + ": devices detail lacks wire_ns/wire_addr/guest_addr";
      return std::nullopt;
    }
    if (d.value("state", "") != "normal" || !det.value("backend_up", false)) {
      *why = v.device + " is " + d.value("state", "?") + (det.value("backend_up", false) ? "" : ", backend not up");
      return std::nullopt;
    }
    vifs.push_back(std::move(v));
  }
  if (vifs.empty()) {
    *why = "shadowd at " + sock + " has no vif device with a local topology (guest_ns/wire_ns)";
    return std::nullopt;
  }
  auto st = ask(sock, {{"cmd", "status"}, {"domain", vifs.front().backend}}, why);
  if (!st) return std::nullopt;
  std::string state = (*st)["domains"][0].value("state", "?");
  if (state != "running") {
    *why = "driver domain " + vifs.front().backend + " is " + state;
    return std::nullopt;
  }
  return vifs;
}

// One guest's iperf3: its server in the wire netns on its own port, its
// client in the guest's netns, and what the client reported.
struct Iperf3Run {
  Vif vif;
  int port = 0;
  Child server, client;
  json app = json::object();
  std::string error;
  bool ok = false;
};

// A guest's iperf3 JSON report: the totals into `app`, each fault's 1 s
// interval into the fault's intervals[guest]; the error iperf3 reported, if
// any.
std::string read_iperf3_report(const std::string& out, const std::string& guest, json& app,
                               std::vector<FollowedFault>& faults) {
  auto rep = json::parse(out, nullptr, false);
  if (!rep.is_object()) {
    app["bits_per_second"] = nullptr;
    app["bytes"] = nullptr;
    app["retransmits"] = nullptr;
    return "no JSON report from iperf3";
  }
  std::string error;
  const json& end = rep.contains("end") ? rep["end"] : json::object();
  const json& rcv = end.contains("sum_received") ? end["sum_received"] : json::object();
  const json& snd = end.contains("sum_sent") ? end["sum_sent"] : json::object();
  app["bits_per_second"] = rcv.contains("bits_per_second") ? rcv["bits_per_second"] : json(nullptr);
  app["bytes"] = rcv.contains("bytes") ? rcv["bytes"] : json(nullptr);
  app["retransmits"] = snd.contains("retransmits") ? snd["retransmits"] : json(nullptr);
  app["sender_bits_per_second"] = snd.contains("bits_per_second") ? snd["bits_per_second"] : json(nullptr);
  if (rep.contains("error") && rep["error"].is_string()) error = rep["error"].get<std::string>();
  if (rep.contains("intervals") && rep["intervals"].is_array())
    for (auto& f : faults) {
      if (f.at_s < 0) continue;
      for (auto& iv : rep["intervals"]) {
        if (!iv.contains("sum")) continue;
        const json& s = iv["sum"];
        double a = s.value("start", 0.0), b = s.value("end", 0.0);
        if (f.at_s >= a && f.at_s < b) {
          f.intervals[guest] = {{"start", a},
                        {"end", b},
                        {"bits_per_second", s.value("bits_per_second", 0.0)},
                        {"retransmits", s.contains("retransmits") ? s["retransmits"] : json(nullptr)}};
          break;
        }
      }
    }
  return error;
}

}  // namespace

int run_iperf3(const std::string& sock, bool json_out, const Opts& o) {
  Progress pr;

  if (!can_run("it runs shadowd and enters network namespaces", {"iperf3", "ip"})) return 1;

  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // ---- shadowd: use the running one, or start one.
  std::string why;
  OwnShadowd own;
  if (!own.start(sock, o.config, pr)) return 1;
  const bool started = own.started();
  auto fail_setup = [&](const std::string& msg) {
    pr.note("shadowctl: demo: " + msg);
    if (own.exited())
      pr.note("shadowd exited with " + own.exit_text() + "; its log (" + own.log_path() + "):\n" +
              last_lines(slurp(own.log_path()), 20));
    else
      own.stop(sock, pr);
    return 1;
  };

  // ---- wait until the vifs and their driver domain are up.
  std::optional<std::vector<Vif>> vifs;
  auto ready_by = Clock::now() + std::chrono::seconds(30);
  while (!(vifs = ready_vifs(sock, &why))) {
    if (g_interrupted) return fail_setup("interrupted");
    if (own.exited()) return fail_setup("shadowd did not come up");
    if (!started && why.find("has no vif") != std::string::npos) return fail_setup(why);
    if (Clock::now() > ready_by) return fail_setup("not ready after 30 s: " + why);
    ::usleep(100000);
  }
  const std::string dom = vifs->front().backend;
  std::deque<Iperf3Run> runs;  // one per guest; a Child does not move
  for (size_t i = 0; i < vifs->size(); ++i) {
    runs.emplace_back();
    runs.back().vif = (*vifs)[i];
    runs.back().port = 5201 + static_cast<int>(i);
  }
  auto stop_all = [&] {
    for (auto& r : runs) {
      r.client.stop(2);
      r.server.stop(2);
    }
  };

  // ---- events: follow from now on.
  Conn events;
  if (!events.open(sock) || !events.send({{"cmd", "events"}, {"n", 1}, {"follow", true}}))
    return fail_setup("cannot open an events stream: " + std::string(std::strerror(errno)));
  {
    pollfd p{events.fd(), POLLIN, 0};
    std::optional<json> first;
    auto until = Clock::now() + std::chrono::seconds(10);
    while (!(first = events.take()) && Clock::now() < until) {
      if (::poll(&p, 1, 100) > 0 && !events.fill()) break;
    }
    if (!first || first->is_discarded() || !first->value("ok", false))
      return fail_setup("shadowd did not accept the events stream");
  }

  for (auto& r : runs)
    pr.note(strf("demo vif: iperf3 from %s (%s, netns %s) to %s:%d (netns %s) for %ld s", r.vif.device.c_str(),
                 r.vif.guest_ip.c_str(), r.vif.guest_ns.c_str(), r.vif.wire_ip.c_str(), r.port,
                 r.vif.wire_ns.c_str(), o.duration));
  pr.note(strf("demo vif: %ld fault(s) into %s", o.faults, dom.c_str()));

  // ---- the application: per guest a server in the wire netns, then the clients in the guests'.
  for (auto& r : runs) {
    if (!r.server.start({"ip", "netns", "exec", r.vif.wire_ns, "iperf3", "-s", "-1", "-p", std::to_string(r.port),
                         "--forceflush"},
                        {.capture = true}, &why)) {
      stop_all();
      return fail_setup("cannot start the iperf3 server: " + why);
    }
    auto until = Clock::now() + std::chrono::seconds(5);
    while (r.server.out_buf.find("listening") == std::string::npos && !r.server.poll_exit() &&
           Clock::now() < until && !g_interrupted) {
      r.server.drain();
      ::usleep(20000);
    }
    r.server.drain();
    if (r.server.exited || r.server.out_buf.find("listening") == std::string::npos) {
      std::string out = r.server.out_buf + r.server.err_buf;
      stop_all();
      return fail_setup(strf("iperf3 server on port %d in netns %s did not start listening:\n", r.port,
                             r.vif.wire_ns.c_str()) +
                        last_lines(out, 10));
    }
  }
  std::string dur = std::to_string(o.duration);
  for (auto& r : runs)
    if (!r.client.start({"ip", "netns", "exec", r.vif.guest_ns, "iperf3", "-c", r.vif.wire_ip, "-p",
                         std::to_string(r.port), "-t", dur, "-J"},
                        {.capture = true}, &why)) {
      stop_all();
      return fail_setup("cannot start the iperf3 client in netns " + r.vif.guest_ns + ": " + why);
    }
  const auto t0 = Clock::now();
  auto elapsed = [&] { return secs(Clock::now() - t0); };
  const double hard_end_s = static_cast<double>(o.duration) + 30;  // the clients get this long, then are killed
  auto clients_running = [&] {
    size_t n = 0;
    for (auto& r : runs) n += !r.client.poll_exit();
    return n;
  };

  std::vector<std::string> notes;
  FollowedFaults sched(sock, dom, "demo vif", o.faults, o.duration, o.kinds, t0, pr, notes);
  auto& faults = sched.faults;
  bool events_open = true, clients_killed = false, interrupted = false;

  auto status_line = [&](bool force) {
    double e = elapsed(), d = static_cast<double>(o.duration);
    std::string over = clients_running() && e > d + 1 ? strf(" (iperf3 %.0f s over its run time)", e - d) : "";
    pr.status(strf("demo vif: %.1f/%ld s, faults %zu/%zu, recovered %zu%s", std::min(e, d), o.duration, sched.next,
                   faults.size(), sched.recovered, over.c_str()),
              force);
  };

  auto pump_events = [&](int timeout_ms) {
    std::vector<pollfd> fds;
    if (events_open) fds.push_back({events.fd(), POLLIN, 0});
    for (auto& r : runs)
      for (int fd : {r.client.out, r.client.err, r.server.out, r.server.err})
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), timeout_ms);
    for (auto& r : runs) {
      r.client.drain();
      r.server.drain();
      if (r.server.out_buf.size() > (1u << 20)) r.server.out_buf.erase(0, r.server.out_buf.size() - 65536);
    }
    if (events_open) {
      if (!events.fill()) {
        events_open = false;
        notes.push_back("lost the events stream (shadowd stopped?)");
        pr.note("demo vif: lost the events stream from shadowd");
      }
      while (auto m = events.take())
        if (!m->is_discarded() && m->contains("event")) sched.on_event((*m)["event"]);
    }
  };

  // ---- main loop: until every client exits.
  while (clients_running()) {
    pump_events(100);
    double e = elapsed();
    if (g_interrupted && !interrupted) {
      interrupted = true;
      notes.push_back("interrupted");
      pr.note("demo vif: interrupted; stopping iperf3");
      for (auto& r : runs) r.client.stop(2);
      break;
    }
    if (e > hard_end_s && !clients_killed) {
      clients_killed = true;
      for (auto& r : runs)
        if (r.client.running())
          notes.push_back(strf("%s: iperf3 client still running %.0f s after its %ld s run; killed",
                               r.vif.guest.c_str(), e - o.duration, o.duration));
      for (auto& r : runs) r.client.stop(2);
      break;
    }
    sched.tick(events_open);
    status_line(false);
  }
  for (auto& r : runs) r.client.drain();
  const double app_end_s = elapsed();
  sched.not_injected(events_open, interrupted, "iperf3 ended first");

  // The last fault's recovery, if it is still under way.
  while (sched.awaiting() && events_open && !g_interrupted) {
    pump_events(100);
    status_line(false);
  }
  sched.give_up(g_interrupted);
  status_line(true);
  pr.clear();

  // The servers exit after their one test; give them a moment, then stop them.
  for (auto& r : runs)
    if (!r.server.wait_exit(3)) r.server.stop(2);

  // ---- each guest's report.
  bool apps_ok = true;
  for (auto& r : runs) {
    r.app = {{"guest", r.vif.guest},
             {"device", r.vif.device},
             {"name", "iperf3"},
             {"exit", r.client.exited ? json(r.client.exit_code()) : json(nullptr)},
             {"ns", r.vif.guest_ns},
             {"addr", r.vif.guest_ip},
             {"port", r.port}};
    r.error = read_iperf3_report(r.client.out_buf, r.vif.guest, r.app, faults);
    if (clients_killed && !r.client.exited)
      r.error += std::string(r.error.empty() ? "" : "; ") + "killed after the time limit";
    std::string client_stderr = last_lines(r.client.err_buf, 5);
    if (r.error.empty() && !client_stderr.empty() && r.client.exit_code() != 0) r.error = client_stderr;
    r.app["error"] = r.error.empty() ? json(nullptr) : json(r.error);
    r.ok = r.client.exited && r.client.exit_code() == 0 && r.error.empty();
    apps_ok = apps_ok && r.ok;
  }

  bool all_recovered = sched.recovered == faults.size();
  bool transparent = apps_ok && all_recovered && !interrupted;

  // ---- shadowd: stop the one we started.
  bool shadowd_clean = true;
  if (started) {
    shadowd_clean = own.stop(sock, pr);
    // What shadowd set up for the demo host should be gone with it.
    std::vector<std::string> netns{runs.front().vif.wire_ns, "sd-" + dom};
    for (auto& r : runs) netns.push_back(r.vif.guest_ns);
    for (const auto& ns : netns) {
      std::error_code ec;
      if (std::filesystem::exists("/run/netns/" + ns, ec))
        notes.push_back("netns " + ns + " is still there after shadowd stopped");
    }
  }
  if (!shadowd_clean) notes.push_back("the shadowd started by the demo did not stop cleanly");

  // ---- report: the table (stderr with --json), then the JSON object.
  FILE* out = table_stream(json_out);
  std::fprintf(out, "\ndemo vif: driver domain %s\n", dom.c_str());
  for (auto& r : runs)
    std::fprintf(out, "  %s: iperf3 -c %s -p %d -t %ld -J in netns %s (%s), server in netns %s\n",
                 r.vif.guest.c_str(), r.vif.wire_ip.c_str(), r.port, o.duration, r.vif.guest_ns.c_str(),
                 r.vif.device.c_str(), r.vif.wire_ns.c_str());
  std::string guest_head;
  for (auto& r : runs) guest_head += strf("  %15s %5s", (r.vif.guest + " Gbit/s").c_str(), "retr");
  std::fprintf(out, "\n%s %8s%s  %s\n", phases_head().c_str(), "seen", guest_head.c_str(), "cause as detected");
  for (size_t i = 0; i < faults.size(); ++i) {
    const FollowedFault& f = faults[i];
    std::string at = f.at_s >= 0 ? strf("%.2f", f.at_s) : "-";
    std::string per_guest;
    for (auto& r : runs) {
      std::string gbit = "-", retr = "-";
      if (f.intervals.contains(r.vif.guest)) {
        const json& iv = f.intervals[r.vif.guest];
        gbit = strf("%.2f", iv.value("bits_per_second", 0.0) / 1e9);
        if (iv["retransmits"].is_number()) retr = std::to_string(iv["retransmits"].get<long long>());
      }
      per_guest += strf("  %15s %5s", gbit.c_str(), retr.c_str());
    }
    std::string cause = f.recovered ? f.cause : (!f.died_cause.empty() ? f.died_cause + "; " : "") + f.note;
    if (f.recovered && !f.note.empty()) cause += " (" + f.note + ")";
    std::string seen = f.observed_ms >= 0 ? strf("%.2f", f.observed_ms) : "-";
    std::fprintf(out, "%s %8s%s  %s\n", phases_row(i + 1, f.kind, at, f.phases).c_str(), seen.c_str(),
                 per_guest.c_str(), cause.empty() ? "-" : cause.c_str());
  }
  if (faults.empty()) std::fprintf(out, "  (no faults injected)\n");
  std::fprintf(out,
               "     phases (shadowd's recovery event) in ms (replay, resume: the slowest device's; devices: Ready to\n"
               "     the last device serving); seen: inject request sent -> recovery event received,\n"
               "     ms, as measured by the demo; Gbit/s and retr: each guest's iperf3 1 s interval in which the\n"
               "     fault hit\n\n");

  for (auto& r : runs) {
    const json& app = r.app;
    std::string tput = app["bits_per_second"].is_number()
                           ? strf("%.2f Gbit/s", app["bits_per_second"].get<double>() / 1e9)
                           : std::string("- Gbit/s");
    std::string bytes = app["bytes"].is_number() ? strf("%.2f GB", app["bytes"].get<double>() / 1e9) : "- GB";
    std::string retrs = app["retransmits"].is_number() ? std::to_string(app["retransmits"].get<long long>()) : "-";
    std::fprintf(out, "iperf3 %s: exit %s, %s received (%s), %s retransmits, errors: %s\n", r.vif.guest.c_str(),
                 r.client.exit_text().c_str(), tput.c_str(), bytes.c_str(), retrs.c_str(),
                 r.error.empty() ? "none" : r.error.c_str());
  }
  if (!sched.unexpected.empty()) {
    std::fprintf(out, "recoveries not caused by the demo: %zu\n", sched.unexpected.size());
    for (auto& ev : sched.unexpected)
      std::fprintf(out, "  cause %s, total %s ms\n", ev.value("cause", std::string("?")).c_str(),
                   fmt_ms(ev.contains("phases_ms") && ev["phases_ms"].is_object() ? ev["phases_ms"].value("total", json())
                                                                                  : json())
                       .c_str());
  }
  for (auto& n : notes) std::fprintf(out, "note: %s\n", n.c_str());
  print_verdict(out, sched.recovered, faults.size(), transparent,
                "every guest's iperf3 exited 0 and every fault was recovered");
  std::fflush(out);

  if (json_out) {
    json jf = json::array();
    for (size_t i = 0; i < faults.size(); ++i) {
      const FollowedFault& f = faults[i];
      json j{{"n", i + 1},
             {"kind", f.kind},
             {"at_s", f.at_s >= 0 ? json(std::round(f.at_s * 1000) / 1000) : json(nullptr)},
             {"recovered", f.recovered},
             {"cause", f.recovered ? json(f.cause) : (f.died_cause.empty() ? json(nullptr) : json(f.died_cause))},
             {"phases_ms", f.phases},
             {"observed_ms", f.observed_ms >= 0 ? json(std::round(f.observed_ms * 1000) / 1000) : json(nullptr)},
             {"app_intervals", f.intervals}};
      if (!f.note.empty()) j["note"] = f.note;
      jf.push_back(j);
    }
    json unexp = json::array();
    for (auto& ev : sched.unexpected)
      unexp.push_back({{"cause", ev.value("cause", "")}, {"phases_ms", ev.value("phases_ms", json())}});
    json apps = json::array();
    for (auto& r : runs) apps.push_back(r.app);
    json s = summary(o.classes, o.duration, dom, jf, apps, sched.recovered, transparent);
    s["app_run_s"] = std::round(app_end_s * 1000) / 1000;
    s["wire"] = {{"ns", runs.front().vif.wire_ns}, {"addr", runs.front().vif.wire_ip}};
    s["shadowd"] = started ? "started" : "running";
    s["unexpected_recoveries"] = unexp;
    s["notes"] = notes;
    print_summary(s);
  }
  return transparent ? 0 : 1;
}

}  // namespace sd::tools::demo
