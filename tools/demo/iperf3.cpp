// `shadowctl demo --classes vif`: iperf3 from the guest's netns to the wire
// netns (the outside world) while faults are injected into the net driver
// domain.
//
// One thread, one poll loop: the events-follow connection to shadowd, the
// iperf3 client's and server's output, the fault schedule and the progress
// line. Faults are injected one at a time: the next waits for its scheduled
// time and for the previous one's recovery event.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
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
  std::string device, backend, guest_ns, guest_ip, wire_ns, wire_ip;
};

std::string strip_prefix_len(const std::string& a) { return a.substr(0, a.find('/')); }

// The first vif with its topology, once it and its driver domain are up;
// nullopt (with why) while not.
std::optional<Vif> ready_vif(const std::string& sock, std::string* why) {
  auto devs = ask(sock, {{"cmd", "devices"}}, why);
  if (!devs) return std::nullopt;
  const json* found = nullptr;
  for (auto& d : (*devs)["devices"])
    if (d.value("class", "") == "vif" && d.contains("detail") && d["detail"].is_object() &&
        !d["detail"].value("guest_ns", "").empty()) {
      found = &d;
      break;
    }
  if (!found) {
    *why = "shadowd at " + sock + " has no vif device with a local topology (guest_ns/wire_ns)";
    return std::nullopt;
  }
  const json& d = *found;
  const json& det = d["detail"];
  Vif v{d.value("device", ""),
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
  auto st = ask(sock, {{"cmd", "status"}, {"domain", v.backend}}, why);
  if (!st) return std::nullopt;
  std::string state = (*st)["domains"][0].value("state", "?");
  if (state != "running") {
    *why = "driver domain " + v.backend + " is " + state;
    return std::nullopt;
  }
  return v;
}

// iperf3's JSON report: the totals into `app`, each fault's 1 s interval
// into the fault; the error iperf3 reported, if any.
std::string read_iperf3_report(const std::string& out, json& app, std::vector<FollowedFault>& faults) {
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
          f.interval = {{"start", a},
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

  // ---- wait until the vif and its driver domain are up.
  std::optional<Vif> vif;
  auto ready_by = Clock::now() + std::chrono::seconds(30);
  while (!(vif = ready_vif(sock, &why))) {
    if (g_interrupted) return fail_setup("interrupted");
    if (own.exited()) return fail_setup("shadowd did not come up");
    if (!started && why.find("has no vif") != std::string::npos) return fail_setup(why);
    if (Clock::now() > ready_by) return fail_setup("not ready after 30 s: " + why);
    ::usleep(100000);
  }
  const std::string dom = vif->backend;

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

  pr.note(strf("demo vif: iperf3 from %s (%s, netns %s) to %s (netns %s) for %ld s; %ld fault(s) into %s",
               vif->device.c_str(), vif->guest_ip.c_str(), vif->guest_ns.c_str(), vif->wire_ip.c_str(),
               vif->wire_ns.c_str(), o.duration, o.faults, dom.c_str()));

  // ---- the application: server in the wire netns, then the client in the guest's.
  Child server, client;
  if (!server.start({"ip", "netns", "exec", vif->wire_ns, "iperf3", "-s", "-1", "--forceflush"}, {.capture = true},
                    &why))
    return fail_setup("cannot start the iperf3 server: " + why);
  {
    auto until = Clock::now() + std::chrono::seconds(5);
    while (server.out_buf.find("listening") == std::string::npos && !server.poll_exit() &&
           Clock::now() < until && !g_interrupted) {
      server.drain();
      ::usleep(20000);
    }
    server.drain();
    if (server.exited || server.out_buf.find("listening") == std::string::npos) {
      std::string out = server.out_buf + server.err_buf;
      server.stop();
      return fail_setup("iperf3 server in netns " + vif->wire_ns + " did not start listening:\n" +
                        last_lines(out, 10));
    }
  }
  std::string dur = std::to_string(o.duration);
  if (!client.start({"ip", "netns", "exec", vif->guest_ns, "iperf3", "-c", vif->wire_ip, "-t", dur, "-J"},
                    {.capture = true}, &why)) {
    server.stop();
    return fail_setup("cannot start the iperf3 client: " + why);
  }
  const auto t0 = Clock::now();
  auto elapsed = [&] { return secs(Clock::now() - t0); };
  const double hard_end_s = static_cast<double>(o.duration) + 30;  // the client gets this long, then is killed

  std::vector<std::string> notes;
  FollowedFaults sched(sock, dom, "demo vif", o.faults, o.duration, o.kinds, t0, pr, notes);
  auto& faults = sched.faults;
  bool events_open = true, client_killed = false, interrupted = false;

  auto status_line = [&](bool force) {
    double e = elapsed(), d = static_cast<double>(o.duration);
    std::string over = client.running() && e > d + 1 ? strf(" (iperf3 %.0f s over its run time)", e - d) : "";
    pr.status(strf("demo vif: %.1f/%ld s, faults %zu/%zu, recovered %zu%s", std::min(e, d), o.duration, sched.next,
                   faults.size(), sched.recovered, over.c_str()),
              force);
  };

  auto pump_events = [&](int timeout_ms) {
    std::vector<pollfd> fds;
    if (events_open) fds.push_back({events.fd(), POLLIN, 0});
    for (int fd : {client.out, client.err, server.out, server.err})
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), timeout_ms);
    client.drain();
    server.drain();
    if (server.out_buf.size() > (1u << 20)) server.out_buf.erase(0, server.out_buf.size() - 65536);
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

  // ---- main loop: until the client exits.
  while (!client.poll_exit()) {
    pump_events(100);
    double e = elapsed();
    if (g_interrupted && !interrupted) {
      interrupted = true;
      notes.push_back("interrupted");
      pr.note("demo vif: interrupted; stopping iperf3");
      client.stop(2);
      break;
    }
    if (e > hard_end_s && !client_killed) {
      client_killed = true;
      notes.push_back(strf("iperf3 client still running %.0f s after its %ld s run; killed", e - o.duration,
                           o.duration));
      client.stop(2);
      break;
    }
    sched.tick(events_open);
    status_line(false);
  }
  client.drain();
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

  // The server exits after its one test; give it a moment, then stop it.
  if (!server.wait_exit(3)) server.stop(2);

  // ---- the application's report.
  json app{{"name", "iperf3"}, {"exit", client.exited ? json(client.exit_code()) : json(nullptr)}};
  std::string app_error = read_iperf3_report(client.out_buf, app, faults);
  if (client_killed) app_error += std::string(app_error.empty() ? "" : "; ") + "killed after the time limit";
  std::string client_stderr = last_lines(client.err_buf, 5);
  if (app_error.empty() && !client_stderr.empty() && client.exit_code() != 0) app_error = client_stderr;
  app["error"] = app_error.empty() ? json(nullptr) : json(app_error);
  bool app_ok = client.exited && client.exit_code() == 0 && app_error.empty();

  bool all_recovered = sched.recovered == faults.size();
  bool transparent = app_ok && all_recovered && !interrupted;

  // ---- shadowd: stop the one we started.
  bool shadowd_clean = true;
  if (started) {
    shadowd_clean = own.stop(sock, pr);
    // What shadowd set up for the demo host should be gone with it.
    for (const auto& ns : {vif->guest_ns, vif->wire_ns, "sd-" + dom}) {
      std::error_code ec;
      if (std::filesystem::exists("/run/netns/" + ns, ec))
        notes.push_back("netns " + ns + " is still there after shadowd stopped");
    }
  }
  if (!shadowd_clean) notes.push_back("the shadowd started by the demo did not stop cleanly");

  // ---- report: the table (stderr with --json), then the JSON object.
  FILE* out = table_stream(json_out);
  std::fprintf(out, "\ndemo vif: iperf3 -c %s -t %ld -J in netns %s (%s), server in netns %s; driver domain %s\n\n",
               vif->wire_ip.c_str(), o.duration, vif->guest_ns.c_str(), vif->device.c_str(), vif->wire_ns.c_str(),
               dom.c_str());
  std::fprintf(out, "%s %8s  %7s %5s  %s\n", phases_head().c_str(), "seen", "Gbit/s", "retr", "cause as detected");
  for (size_t i = 0; i < faults.size(); ++i) {
    const FollowedFault& f = faults[i];
    std::string at = f.at_s >= 0 ? strf("%.2f", f.at_s) : "-";
    std::string gbit = "-", retr = "-";
    if (f.interval.is_object()) {
      gbit = strf("%.2f", f.interval.value("bits_per_second", 0.0) / 1e9);
      if (f.interval["retransmits"].is_number()) retr = std::to_string(f.interval["retransmits"].get<long long>());
    }
    std::string cause = f.recovered ? f.cause : (!f.died_cause.empty() ? f.died_cause + "; " : "") + f.note;
    if (f.recovered && !f.note.empty()) cause += " (" + f.note + ")";
    std::string seen = f.observed_ms >= 0 ? strf("%.2f", f.observed_ms) : "-";
    std::fprintf(out, "%s %8s  %7s %5s  %s\n", phases_row(i + 1, f.kind, at, f.phases).c_str(), seen.c_str(),
                 gbit.c_str(), retr.c_str(), cause.empty() ? "-" : cause.c_str());
  }
  if (faults.empty()) std::fprintf(out, "  (no faults injected)\n");
  std::fprintf(out,
               "     phases (shadowd's recovery event) in ms; seen: inject request sent -> recovery event received,\n"
               "     ms, as measured by the demo; Gbit/s and retr: iperf3's 1 s interval in which the fault hit\n\n");

  std::string tput = app["bits_per_second"].is_number() ? strf("%.2f Gbit/s", app["bits_per_second"].get<double>() / 1e9)
                                                        : std::string("- Gbit/s");
  std::string bytes = app["bytes"].is_number() ? strf("%.2f GB", app["bytes"].get<double>() / 1e9) : "- GB";
  std::string retrs = app["retransmits"].is_number() ? std::to_string(app["retransmits"].get<long long>()) : "-";
  std::fprintf(out, "iperf3: exit %s, %s received (%s), %s retransmits, errors: %s\n", client.exit_text().c_str(),
               tput.c_str(), bytes.c_str(), retrs.c_str(), app_error.empty() ? "none" : app_error.c_str());
  if (!sched.unexpected.empty()) {
    std::fprintf(out, "recoveries not caused by the demo: %zu\n", sched.unexpected.size());
    for (auto& ev : sched.unexpected)
      std::fprintf(out, "  cause %s, total %s ms\n", ev.value("cause", std::string("?")).c_str(),
                   fmt_ms(ev.contains("phases_ms") && ev["phases_ms"].is_object() ? ev["phases_ms"].value("total", json())
                                                                                  : json())
                       .c_str());
  }
  for (auto& n : notes) std::fprintf(out, "note: %s\n", n.c_str());
  print_verdict(out, sched.recovered, faults.size(), transparent, "iperf3 exited 0 and every fault was recovered");
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
             {"app_interval", f.interval}};
      if (!f.note.empty()) j["note"] = f.note;
      jf.push_back(j);
    }
    json unexp = json::array();
    for (auto& ev : sched.unexpected)
      unexp.push_back({{"cause", ev.value("cause", "")}, {"phases_ms", ev.value("phases_ms", json())}});
    json s = summary(o.classes, o.duration, vif->device, dom, jf, app, sched.recovered, transparent);
    s["app_run_s"] = std::round(app_end_s * 1000) / 1000;
    s["guest"] = {{"ns", vif->guest_ns}, {"addr", vif->guest_ip}};
    s["wire"] = {{"ns", vif->wire_ns}, {"addr", vif->wire_ip}};
    s["shadowd"] = started ? "started" : "running";
    s["unexpected_recoveries"] = unexp;
    s["notes"] = notes;
    print_summary(s);
  }
  return transparent ? 0 : 1;
}

}  // namespace sd::tools::demo
