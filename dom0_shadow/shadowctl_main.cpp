// shadowctl: the operator's command line for shadowd, shaped like xl: one
// table of subcommands, each with a one-line help.
#include <getopt.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "demo.hpp"

namespace {

using nlohmann::json;

struct Global {
  std::string socket = "/run/shadowd/shadowd.sock";
  bool json_out = false;
};

const char kUsage[] = "usage: shadowctl [--socket PATH] [--json] COMMAND [ARGS]\n";

// ---- connection (Conn: demo.hpp) ------------------------------------------

using sd::shadowctl::Conn;

// Sends one request and returns the answer; prints the error and returns
// nullopt when shadowd is unreachable or refuses.
std::optional<json> call(const Global& g, const json& req, Conn* keep = nullptr) {
  Conn local;
  Conn& c = keep ? *keep : local;
  if (!c.open(g.socket)) {
    std::fprintf(stderr, "shadowctl: cannot reach shadowd at %s: %s (is shadowd running? use --socket)\n",
                 g.socket.c_str(), std::strerror(errno));
    return std::nullopt;
  }
  if (!c.send(req)) {
    std::fprintf(stderr, "shadowctl: lost connection to shadowd\n");
    return std::nullopt;
  }
  auto rep = c.recv();
  if (!rep) {
    std::fprintf(stderr, "shadowctl: no answer from shadowd\n");
    return std::nullopt;
  }
  if (!(*rep)["ok"].is_boolean() || !(*rep)["ok"].get<bool>()) {
    std::fprintf(stderr, "shadowctl: %s\n", (*rep).value("error", std::string("request failed")).c_str());
    return std::nullopt;
  }
  return rep;
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

// ---- subcommands ----------------------------------------------------------

using Args = std::vector<std::string>;

int cmd_list(const Global& g, const Args& a) {
  if (!a.empty()) return 2;
  auto r = call(g, {{"cmd", "list"}});
  if (!r) return 1;
  if (g.json_out) return std::printf("%s\n", r->dump().c_str()), 0;
  std::printf("%-16s %6s  %-10s %8s %8s\n", "Name", "ID", "State", "Restarts", "Devices");
  for (auto& d : (*r)["domains"])
    std::printf("%-16s %6s  %-10s %8s %8s\n", fmt(d["name"]).c_str(), fmt(d["domid"]).c_str(),
                fmt(d["state"]).c_str(), fmt(d["restarts"]).c_str(), fmt(d["devices"]).c_str());
  return 0;
}

int cmd_status(const Global& g, const Args& a) {
  if (a.size() > 1) return 2;
  json req{{"cmd", "status"}};
  if (a.size() == 1) req["domain"] = a[0];
  auto r = call(g, req);
  if (!r) return 1;
  if (g.json_out) return std::printf("%s\n", r->dump().c_str()), 0;
  bool first = true;
  for (auto& d : (*r)["domains"]) {
    if (!first) std::printf("\n");
    first = false;
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
  return 0;
}

int cmd_devices(const Global& g, const Args& a) {
  if (!a.empty()) return 2;
  auto r = call(g, {{"cmd", "devices"}});
  if (!r) return 1;
  if (g.json_out) return std::printf("%s\n", r->dump().c_str()), 0;
  std::printf("%-20s %-6s %-12s %-11s %10s %14s\n", "Device", "Class", "Backend", "State", "Recoveries",
              "Last outage");
  for (auto& d : (*r)["devices"])
    std::printf("%-20s %-6s %-12s %-11s %10s %14s\n", fmt(d["device"]).c_str(), fmt(d["class"]).c_str(),
                fmt(d["backend"]).c_str(), fmt(d["state"]).c_str(), fmt(d["recoveries"]).c_str(),
                fmt(d["last_outage_ms"], " ms").c_str());
  return 0;
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
  auto r = call(g, {{"cmd", "inject-fault"}, {"domain", a[0]}, {"kind", a[1]}});
  if (!r) return 1;
  if (g.json_out) return std::printf("%s\n", r->dump().c_str()), 0;
  std::printf("injected %s into %s\n", a[1].c_str(), a[0].c_str());
  return 0;
}

int cmd_restart(const Global& g, const Args& a) {
  if (a.size() != 1) return 2;
  auto r = call(g, {{"cmd", "restart"}, {"domain", a[0]}});
  if (!r) return 1;
  if (g.json_out) return std::printf("%s\n", r->dump().c_str()), 0;
  std::printf("restarting %s\n", a[0].c_str());
  return 0;
}

int cmd_policy(const Global& g, const Args& a) {
  if (a.size() != 2 || a[0] != "show") return 2;
  auto r = call(g, {{"cmd", "policy-show"}, {"class", a[1]}});
  if (!r) return 1;
  if (g.json_out) return std::printf("%s\n", r->dump().c_str()), 0;
  std::printf("# %s\n%s", fmt((*r)["file"]).c_str(), fmt((*r)["yaml"]).c_str());
  return 0;
}

int cmd_demo(const Global& g, const Args& a) { return sd::shadowctl::demo_main(g.socket, g.json_out, a); }

int cmd_shutdown(const Global& g, const Args& a) {
  if (!a.empty()) return 2;
  auto r = call(g, {{"cmd", "shutdown"}});
  if (!r) return 1;
  if (!g.json_out) std::printf("shadowd is shutting down\n");
  return 0;
}

struct Command {
  const char* name;
  const char* args;
  const char* help;
  int (*fn)(const Global&, const Args&);
  const char* long_help = nullptr;  // `shadowctl COMMAND --help`, when more than the one line
};

const Command kCommands[] = {
    {"list", "", "list driver domains with state and restart count", cmd_list},
    {"status", "[DOMAIN]", "show a driver domain's state, restarts and last recovery timings", cmd_status},
    {"devices", "", "list shadowed guest devices and their recovery state", cmd_devices},
    {"events", "[-f] [-n N]", "show the last N events (default 20); -f follows new ones", cmd_events},
    {"inject-fault", "DOMAIN KIND", "make a driver domain fail: kill | segv | hang | sigsys", cmd_inject},
    {"restart", "DOMAIN", "restart a driver domain now (also one that is fenced)", cmd_restart},
    {"policy", "show CLASS", "print the policy in force for vif | vsnd | vbd", cmd_policy},
    {"demo", sd::shadowctl::kDemoArgs,
     "run an application through a guest device while injecting faults; report the recoveries", cmd_demo,
     sd::shadowctl::kDemoHelp},
    {"shutdown", "", "stop all driver domains and shadowd", cmd_shutdown},
};

void help() {
  std::printf(
      "%s\n"
      "Talks to shadowd over its control socket.\n\n"
      "Options:\n"
      "  -s, --socket PATH   shadowd's control socket (default /run/shadowd/shadowd.sock)\n"
      "  -j, --json          print shadowd's answer as JSON (one object; events: one per line)\n"
      "  -V, --version       print the version and exit\n"
      "  -h, --help          this help\n\n"
      "Commands:\n",
      kUsage);
  for (const auto& c : kCommands) {
    std::string head = std::string(c.name) + (*c.args ? " " : "") + c.args;
    if (head.size() > 26)
      std::printf("  %s\n  %-26s %s\n", head.c_str(), "", c.help);
    else
      std::printf("  %-26s %s\n", head.c_str(), c.help);
  }
  std::printf("\nExit status: 0 success, 1 shadowd refused or is unreachable, 2 bad command line.\n");
}

}  // namespace

int main(int argc, char** argv) {
  Global g;
  static const option kOpts[] = {{"socket", required_argument, nullptr, 's'},
                                 {"json", no_argument, nullptr, 'j'},
                                 {"version", no_argument, nullptr, 'V'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  opterr = 0;
  // '+': stop at the first non-option, the subcommand; its own args follow.
  for (int c; (c = getopt_long(argc, argv, "+:s:jVh", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 's': g.socket = optarg; break;
      case 'j': g.json_out = true; break;
      case 'V': std::printf("shadowctl 0.1\n"); return 0;
      case 'h': help(); return 0;
      case ':':
        std::fprintf(stderr, "shadowctl: option %s needs a value\n%s", argv[optind - 1], kUsage);
        return 2;
      default:
        std::fprintf(stderr, "shadowctl: unknown option %s\n%s", argv[optind - 1], kUsage);
        return 2;
    }
  }
  if (optind >= argc) {
    std::fprintf(stderr, "shadowctl: no command given\n%s", kUsage);
    return 2;
  }
  std::string name = argv[optind];
  Args args(argv + optind + 1, argv + argc);
  if (name == "help") {
    help();
    return 0;
  }
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    // Options after the subcommand: --json is accepted anywhere, like xl.
    Args rest;
    for (auto& a : args) {
      if (a == "--json" || a == "-j")
        g.json_out = true;
      else if (a == "-h" || a == "--help") {
        if (c.long_help)
          std::printf("%s", c.long_help);
        else
          std::printf("usage: shadowctl %s %s\n  %s\n", c.name, c.args, c.help);
        return 0;
      } else
        rest.push_back(a);
    }
    int rc = c.fn(g, rest);
    if (rc == 2) std::fprintf(stderr, "usage: shadowctl %s %s\n", c.name, c.args);
    return rc;
  }
  std::fprintf(stderr, "shadowctl: unknown command '%s' (see shadowctl --help)\n%s", name.c_str(), kUsage);
  return 2;
}
