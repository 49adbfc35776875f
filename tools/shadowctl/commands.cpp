#include "commands.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <utility>

#include "control_client.hpp"
#include "demo.hpp"

namespace sd::shadowctl {
namespace {

using nlohmann::json;
using tools::Conn;

// Sends one request and returns the answer; prints the error and returns
// nullopt when shadowd is unreachable or refuses.
std::optional<json> call(const Global& g, const json& req, Conn* keep = nullptr) {
  auto r = tools::request(g.socket, req, keep);
  if (r) return std::move(*r);
  std::fprintf(stderr, "shadowctl: %s%s\n", r.error().text.c_str(),
               r.error().kind == tools::RequestError::kUnreachable ? " (is shadowd running? use --socket)" : "");
  return std::nullopt;
}

// Sends req; prints the answer as JSON with --json, else hands it to `text`.
// The exit status.
int answer(const Global& g, const json& req, const std::function<void(json&)>& text) {
  auto r = call(g, req);
  if (!r) return 1;
  if (g.json_out)
    std::printf("%s\n", r->dump().c_str());
  else
    text(*r);
  return 0;
}

std::string fmt(const json& v, const char* unit = "") {
  if (v.is_null()) return "-";
  if (v.is_number_float()) {
    char b[64];
    std::snprintf(b, sizeof(b), "%.2f%s", v.get<double>(), unit);
    return b;
  }
  if (v.is_string()) return v.get<std::string>();
  return v.dump() + unit;
}

std::string event_line(const json& ev) {
  char ts[32] = "-";
  if (ev.contains("ts") && ev["ts"].is_number()) {
    time_t t = static_cast<time_t>(ev["ts"].get<int64_t>() / 1000);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    std::strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
    std::snprintf(ts + std::strlen(ts), sizeof(ts) - std::strlen(ts), ".%03lld",
                  static_cast<long long>(ev["ts"].get<int64_t>() % 1000));
  }
  std::string rest;
  for (auto& [k, v] : ev.items()) {
    if (k == "ts" || k == "seq" || k == "type") continue;
    if (k == "phases_ms" && v.is_object()) {
      rest += " phases(ms):";
      for (auto& [pk, pv] : v.items()) rest += " " + pk + "=" + fmt(pv);
      continue;
    }
    if (v.is_array() || v.is_object()) continue;
    rest += " " + k + "=" + fmt(v);
  }
  return std::string(ts) + "  " + ev.value("type", std::string("?")) + rest;
}

int cmd_list(const Global& g, const Args& a) {
  if (!a.empty()) return 2;
  return answer(g, {{"cmd", "list"}}, [](json& r) {
    std::printf("%-16s %6s  %-10s %8s %8s\n", "Name", "ID", "State", "Restarts", "Devices");
    for (auto& d : r["domains"])
      std::printf("%-16s %6s  %-10s %8s %8s\n", fmt(d["name"]).c_str(), fmt(d["domid"]).c_str(),
                  fmt(d["state"]).c_str(), fmt(d["restarts"]).c_str(), fmt(d["devices"]).c_str());
  });
}

int cmd_status(const Global& g, const Args& a) {
  if (a.size() > 1) return 2;
  json req{{"cmd", "status"}};
  if (a.size() == 1) req["domain"] = a[0];
  return answer(g, req, [](json& r) {
    const char* sep = "";
    for (auto& d : r["domains"]) {
      std::printf("%s", std::exchange(sep, "\n"));
      std::printf("name:              %s\n", fmt(d["name"]).c_str());
      std::printf("state:             %s\n", fmt(d["state"]).c_str());
      std::printf("domid:             %s\n", fmt(d["domid"]).c_str());
      std::printf("pid:               %s\n", fmt(d["pid"]).c_str());
      std::printf("incarnations:      %s\n", fmt(d["incarnations"]).c_str());
      std::printf("restarts:          %s\n", fmt(d["restarts"]).c_str());
      std::printf("last cause:        %s\n", d["last_cause"].get<std::string>().empty() ? "-" : fmt(d["last_cause"]).c_str());
      std::printf("last detect:       %s\n", fmt(d["last_detect_ms"], " ms").c_str());
      std::printf("death to ready:    %s\n", fmt(d["last_death_to_ready_ms"], " ms").c_str());
      std::printf("fault to ready:    %s\n", fmt(d["last_fault_to_ready_ms"], " ms").c_str());
      std::printf("start to ready:    %s\n", fmt(d["last_start_ms"], " ms").c_str());
      std::printf("standby:           %s (promotions: %s)\n", fmt(d["standby"]).c_str(), fmt(d["promotions"]).c_str());
      std::printf("policy:            %s\n", fmt(d["policy"]).c_str());
      std::printf("cfg:               %s\n", fmt(d["cfg"]).c_str());
    }
  });
}

int cmd_devices(const Global& g, const Args& a) {
  if (!a.empty()) return 2;
  return answer(g, {{"cmd", "devices"}}, [](json& r) {
    std::printf("%-20s %-6s %-12s %-11s %10s %14s\n", "Device", "Class", "Backend", "State", "Recoveries",
                "Last outage");
    for (auto& d : r["devices"]) {
      std::printf("%-20s %-6s %-12s %-11s %10s %14s\n", fmt(d["device"]).c_str(), fmt(d["class"]).c_str(),
                  fmt(d["backend"]).c_str(), fmt(d["state"]).c_str(), fmt(d["recoveries"]).c_str(),
                  fmt(d["last_outage_ms"], " ms").c_str());
      if (d.contains("error")) std::printf("  error: %s\n", fmt(d["error"]).c_str());
    }
  });
}

int cmd_events(const Global& g, const Args& a) {
  bool follow = false;
  size_t n = 20;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "-f" || a[i] == "--follow")
      follow = true;
    else if ((a[i] == "-n") && i + 1 < a.size()) {
      char* end = nullptr;
      unsigned long v = std::strtoul(a[++i].c_str(), &end, 10);
      if (!end || *end || v == 0 || v > 100000) {
        std::fprintf(stderr, "shadowctl: events -n wants a count 1..100000\n");
        return 2;
      }
      n = v;
    } else
      return 2;
  }
  Conn c;
  auto r = call(g, {{"cmd", "events"}, {"n", n}, {"follow", follow}}, &c);
  if (!r) return 1;
  for (auto& ev : (*r)["events"])
    std::printf("%s\n", g.json_out ? ev.dump().c_str() : event_line(ev).c_str());
  std::fflush(stdout);
  while (follow) {
    auto m = c.recv();
    if (!m) return 0;  // shadowd stopped
    if (!m->contains("event")) continue;
    std::printf("%s\n", g.json_out ? (*m)["event"].dump().c_str() : event_line((*m)["event"]).c_str());
    std::fflush(stdout);
  }
  return 0;
}

int cmd_inject(const Global& g, const Args& a) {
  if (a.size() != 2) return 2;
  return answer(g, {{"cmd", "inject-fault"}, {"domain", a[0]}, {"kind", a[1]}},
                [&](const json&) { std::printf("injected %s into %s\n", a[1].c_str(), a[0].c_str()); });
}

int cmd_restart(const Global& g, const Args& a) {
  if (a.size() != 1) return 2;
  return answer(g, {{"cmd", "restart"}, {"domain", a[0]}},
                [&](const json&) { std::printf("restarting %s\n", a[0].c_str()); });
}

int cmd_policy(const Global& g, const Args& a) {
  if (a.size() != 2 || a[0] != "show") return 2;
  return answer(g, {{"cmd", "policy-show"}, {"class", a[1]}},
                [](json& r) { std::printf("# %s\n%s", fmt(r["file"]).c_str(), fmt(r["yaml"]).c_str()); });
}

int cmd_demo(const Global& g, const Args& a) { return tools::demo::demo_main(g.socket, g.json_out, a); }

int cmd_shutdown(const Global& g, const Args& a) {
  if (!a.empty()) return 2;
  auto r = call(g, {{"cmd", "shutdown"}});
  if (!r) return 1;
  if (!g.json_out) std::printf("shadowd is shutting down\n");
  return 0;
}

const Command kCommands[] = {
    {"list", "", "list driver domains with state and restart count", cmd_list},
    {"status", "[DOMAIN]", "show a driver domain's state, restarts and last recovery timings", cmd_status},
    {"devices", "", "list shadowed guest devices and their recovery state", cmd_devices},
    {"events", "[-f] [-n N]", "show the last N events (default 20); -f follows new ones", cmd_events},
    {"inject-fault", "DOMAIN KIND", "make a driver domain fail: kill | segv | hang | sigsys", cmd_inject},
    {"restart", "DOMAIN", "restart a driver domain now (also one that is fenced)", cmd_restart},
    {"policy", "show CLASS", "print the policy in force for vif | vsnd | vbd", cmd_policy},
    {"demo", tools::demo::kDemoArgs,
     "run an application through a guest device while injecting faults; report the recoveries", cmd_demo,
     tools::demo::kDemoHelp},
    {"shutdown", "", "stop all driver domains and shadowd", cmd_shutdown},
};

}  // namespace

std::span<const Command> commands() { return kCommands; }

}  // namespace sd::shadowctl
