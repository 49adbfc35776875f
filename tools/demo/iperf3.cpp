// `shadowctl demo --classes vif`: iperf3 from each guest's netns to the wire
// netns (the outside world), every guest whose vif the net driver domain
// serves at once, each to its own server port, while faults are injected
// into that driver domain.
#include <unistd.h>

#include <deque>
#include <filesystem>

#include "faults.hpp"
#include "host.hpp"

namespace sd::tools::demo {

using nlohmann::json;

namespace {

// One guest's iperf3: its server in the wire netns on its own port, its
// client in the guest's netns, and what the client reported.
struct Iperf3Run : GuestDevice {
  using GuestDevice::GuestDevice;
  std::string guest_ns, guest_ip, wire_ns, wire_ip;
  int port = 0;
  Child server, client;
  json app = json::object();
  json intervals = json::array();  // per fault: the client's 1 s interval it hit
  std::string error;
};

std::string strip_prefix_len(const std::string& a) { return a.substr(0, a.find('/')); }

// A guest's iperf3 JSON report: the totals into r.app, each fault's 1 s
// interval into r.intervals; the error iperf3 reported, if any.
std::string read_iperf3_report(Iperf3Run& r, const std::vector<Fault>& faults) {
  auto rep = json::parse(r.client.out_buf, nullptr, false);
  const json none = json::object();
  const json& end = rep.is_object() && rep.contains("end") ? rep["end"] : none;
  const json& rcv = end.contains("sum_received") ? end["sum_received"] : none;
  const json& snd = end.contains("sum_sent") ? end["sum_sent"] : none;
  r.app["bits_per_second"] = rcv.value("bits_per_second", json());
  r.app["bytes"] = rcv.value("bytes", json());
  r.app["retransmits"] = snd.value("retransmits", json());
  if (!rep.is_object()) return "no JSON report from iperf3";
  r.app["sender_bits_per_second"] = snd.value("bits_per_second", json());
  for (auto& f : faults) {
    json hit = nullptr;
    for (auto& iv : rep.value("intervals", json::array())) {
      const json& s = iv.value("sum", none);
      double a = s.value("start", 0.0), b = s.value("end", 0.0);
      if (f.at_s >= 0 && f.at_s >= a && f.at_s < b) {
        hit = {{"start", a}, {"end", b}, {"bits_per_second", s.value("bits_per_second", 0.0)},
               {"retransmits", s.value("retransmits", json())}};
        break;
      }
    }
    r.intervals.push_back(hit);
  }
  return rep.contains("error") && rep["error"].is_string() ? rep["error"].get<std::string>() : "";
}

}  // namespace

int run_iperf3(const std::string& sock, bool json_out, const Opts& o) {
  Progress pr;
  if (!can_run("it runs shadowd and enters network namespaces", {"iperf3", "ip"})) return 1;
  ScratchRun run;
  if (!run.begin("vif", sock, o.config, pr)) return 1;
  std::deque<Iperf3Run> runs;  // one per guest; a Child does not move
  run.on_end = [&] {
    for (auto& r : runs) {
      r.client.stop(2);
      r.server.stop(2);
    }
  };

  // ---- the vifs with a local topology on the first one's driver domain.
  auto vifs = wait_devices(sock, "vif", pr);
  if (vifs.empty()) return run.end(1);
  const std::string dom = vifs.front().value("backend", "");
  for (auto& v : vifs) {
    Iperf3Run& r = runs.emplace_back(v);
    r.guest_ns = r.detail.value("guest_ns", "");
    r.guest_ip = strip_prefix_len(r.detail.value("guest_addr", ""));
    r.wire_ns = r.detail.value("wire_ns", "");
    r.wire_ip = strip_prefix_len(r.detail.value("wire_addr", ""));
    r.port = 5201 + static_cast<int>(runs.size() - 1);
    if (r.guest_ns.empty() || r.wire_ns.empty() || r.wire_ip.empty() || r.guest_ip.empty())
      return run.fail(r.device + ": devices detail lacks guest_ns/guest_addr/wire_ns/wire_addr");
  }
  FaultSchedule sched(sock, dom, o, pr);
  std::string why;
  if (!sched.follow(&why)) return run.fail(why);
  for (auto& r : runs)
    pr.note(strf("demo vif: iperf3 from %s (%s, netns %s) to %s:%d (netns %s) for %ld s", r.device.c_str(),
                 r.guest_ip.c_str(), r.guest_ns.c_str(), r.wire_ip.c_str(), r.port, r.wire_ns.c_str(), o.duration));
  pr.note(strf("demo vif: %ld fault(s) into %s", o.faults, dom.c_str()));

  // ---- the application: per guest a server in the wire netns, then the clients in the guests'.
  for (auto& r : runs) {
    if (!r.server.start({"ip", "netns", "exec", r.wire_ns, "iperf3", "-s", "-1", "-p", std::to_string(r.port),
                         "--forceflush"},
                        &why))
      return run.fail("cannot start the iperf3 server: " + why);
    auto until = Clock::now() + std::chrono::seconds(5);
    while (r.server.out_buf.find("listening") == std::string::npos && !r.server.poll_exit() &&
           Clock::now() < until && !interrupted()) {
      r.server.drain();
      ::usleep(20000);
    }
    r.server.drain();
    if (r.server.exited || r.server.out_buf.find("listening") == std::string::npos)
      return run.fail(strf("iperf3 server on port %d in netns %s did not start listening:\n", r.port,
                           r.wire_ns.c_str()) +
                      last_lines(r.server.out_buf + r.server.err_buf, 10));
  }
  for (auto& r : runs)
    if (!r.client.start({"ip", "netns", "exec", r.guest_ns, "iperf3", "-c", r.wire_ip, "-p", std::to_string(r.port),
                         "-t", std::to_string(o.duration), "-J"},
                        &why))
      return run.fail("cannot start the iperf3 client in netns " + r.guest_ns + ": " + why);

  // ---- faults while the clients run; their pipes are read on every turn.
  auto clients_done = [&] {
    bool done = true;
    for (auto& r : runs) {
      r.client.drain();
      r.server.drain();
      if (r.server.out_buf.size() > (1u << 20)) r.server.out_buf.erase(0, r.server.out_buf.size() - 65536);
      done = r.client.poll_exit() && done;
    }
    return done;
  };
  auto stop_clients = [&] {
    for (auto& r : runs) {
      if (r.client.running() && !sched.interrupted)
        sched.notes.push_back(strf("%s: iperf3 client still running %.0f s after its %ld s run; killed",
                                   r.guest.c_str(), sched.app_end_s - o.duration, o.duration));
      r.client.stop(2);
    }
  };
  sched.run(Clock::now(), "iperf3", clients_done, stop_clients);
  // The servers exit after their one test; give them a moment, then stop them.
  for (auto& r : runs)
    if (!r.server.wait_exit(3)) r.server.stop(2);

  // ---- each guest's report.
  bool apps_ok = true;
  for (auto& r : runs) {
    r.app = {{"guest", r.guest}, {"device", r.device}, {"name", "iperf3"},
             {"exit", r.client.exited ? json(r.client.exit_code()) : json(nullptr)},
             {"ns", r.guest_ns}, {"addr", r.guest_ip}, {"port", r.port}};
    r.error = read_iperf3_report(r, sched.faults);
    if (sched.overtime && !r.client.exited)
      r.error += std::string(r.error.empty() ? "" : "; ") + "killed after the time limit";
    std::string client_stderr = last_lines(r.client.err_buf, 5);
    if (r.error.empty() && !client_stderr.empty() && r.client.exit_code() != 0) r.error = client_stderr;
    r.app["error"] = r.error.empty() ? json(nullptr) : json(r.error);
    apps_ok = apps_ok && r.client.exited && r.client.exit_code() == 0 && r.error.empty();
  }
  bool transparent = apps_ok && sched.recovered == sched.faults.size() && !sched.interrupted;

  // ---- shadowd: stop the one we started; what it set up for the demo host should be gone with it.
  if (run.started()) {
    if (!run.stop_shadowd()) sched.notes.push_back("the shadowd started by the demo did not stop cleanly");
    std::vector<std::string> netns{runs.front().wire_ns, "sd-" + dom};
    for (auto& r : runs) netns.push_back(r.guest_ns);
    for (const auto& ns : netns) {
      std::error_code ec;
      if (std::filesystem::exists("/run/netns/" + ns, ec))
        sched.notes.push_back("netns " + ns + " is still there after shadowd stopped");
    }
  }

  // ---- report: the table (stderr with --json), then the JSON object.
  FILE* out = table_stream(json_out);
  std::fprintf(out, "\ndemo vif: driver domain %s\n", dom.c_str());
  for (auto& r : runs)
    std::fprintf(out, "  %s: iperf3 -c %s -p %d -t %ld -J in netns %s (%s), server in netns %s\n", r.guest.c_str(),
                 r.wire_ip.c_str(), r.port, o.duration, r.guest_ns.c_str(), r.device.c_str(), r.wire_ns.c_str());
  std::string head = strf(" %8s", "seen");
  for (auto& r : runs) head += strf("  %15s %5s", (r.guest + " Gbit/s").c_str(), "retr");
  sched.print_table(out, head, [&](size_t i) {
    const Fault& f = sched.faults[i];
    std::string cells = strf(" %8s", f.observed_ms >= 0 ? strf("%.2f", f.observed_ms).c_str() : "-");
    for (auto& r : runs) {
      const json& iv = i < r.intervals.size() ? r.intervals[i] : json();
      cells += strf("  %15s %5s", iv.is_object() ? strf("%.2f", iv.value("bits_per_second", 0.0) / 1e9).c_str() : "-",
                    iv.is_object() && iv["retransmits"].is_number() ? iv["retransmits"].dump().c_str() : "-");
    }
    return cells;
  });
  std::fprintf(out,
               "     phases (shadowd's recovery event) in ms (replay, resume: the slowest device's; devices: Ready to\n"
               "     the last device serving); seen: inject request sent -> recovery event received,\n"
               "     ms, as measured by the demo; Gbit/s and retr: each guest's iperf3 1 s interval in which the\n"
               "     fault hit\n\n");
  for (auto& r : runs) {
    auto num = [&](const char* k, double scale, const char* unit) {
      return r.app[k].is_number() ? strf("%.2f%s", r.app[k].get<double>() / scale, unit) : strf("-%s", unit);
    };
    std::fprintf(out, "iperf3 %s: exit %s, %s received (%s), %s retransmits, errors: %s\n", r.guest.c_str(),
                 r.client.exit_text().c_str(), num("bits_per_second", 1e9, " Gbit/s").c_str(),
                 num("bytes", 1e9, " GB").c_str(),
                 r.app["retransmits"].is_number() ? r.app["retransmits"].dump().c_str() : "-",
                 r.error.empty() ? "none" : r.error.c_str());
  }
  sched.print_notes(out);
  print_verdict(out, sched.recovered, sched.faults.size(), transparent,
                "every guest's iperf3 exited 0 and every fault was recovered");
  std::fflush(out);
  if (json_out) {
    json apps = json::array();
    for (auto& r : runs) apps.push_back(r.app);
    json s = sched.summary(apps, transparent, [&](size_t i, json& j) {
      j["app_intervals"] = json::object();
      for (auto& r : runs)
        if (i < r.intervals.size() && !r.intervals[i].is_null()) j["app_intervals"][r.guest] = r.intervals[i];
    });
    s["wire"] = {{"ns", runs.front().wire_ns}, {"addr", runs.front().wire_ip}};
    s["shadowd"] = run.started() ? "started" : "running";
    print_summary(s);
  }
  return run.end(transparent ? 0 : 1);
}

}  // namespace sd::tools::demo
