// `shadowctl demo`: its help, its options, and the workload for the class.
#include "demo.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

#include "faults.hpp"

namespace sd::tools::demo {

const char kDemoArgs[] =
    "--classes vif|vsnd|vbd [--duration S] [--faults N] [--fault-kinds K,...] [--config HOST] [--json]";

const char kDemoHelp[] =
    "usage: shadowctl demo --classes vif|vsnd|vbd [--duration S] [--faults N] [--fault-kinds K,...]\n"
    "                      [--config HOST] [--json]\n"
    "  Runs a real application through every guest's device of the class on one driver domain\n"
    "  (the first device's; on the demo host guest1's and guest2's), all at once, while faults are\n"
    "  injected into that driver domain, then reports each fault's recovery and what each guest's\n"
    "  application saw.\n"
    "\n"
    "  vif: per guest iperf3 -s -1 -p PORT in the wire netns (the outside world, ports 5201, 5202,\n"
    "  ...), iperf3 -c WIRE_IP -p PORT -t S -J in the guest's netns; the netns names and addresses\n"
    "  come from `shadowctl devices --json`.\n"
    "  vsnd: per guest aplay -D shadow through the ALSA plugin of the guest's vsnd plays a marked\n"
    "  WAV (every frame names its index); per fault and guest the gap heard is measured from that\n"
    "  card's virtual DAC recording, sample-accurately (needs alsa-utils).\n"
    "  vbd: per guest fio writes 4k blocks with crc32c and reads every one back through the guest's\n"
    "  disk (sd-blkfront: a FUSE file), pass after pass for S seconds; per fault the recovery phases\n"
    "  and the requests replayed; per guest fio's exit codes and verify errors (needs fio).\n"
    "\n"
    "Options:\n"
    "  --classes CLASS      the device class to exercise: vif, vsnd or vbd; required\n"
    "  --duration S         length of the application run, whole seconds, 1..3600 (default 20)\n"
    "  --faults N           faults to inject, 0..1000 (default 5), at (i+1)*S/(N+1) s; a fault also\n"
    "                       waits for the previous one's recovery\n"
    "  --fault-kinds LIST   kinds used round-robin, comma-separated (default kill,segv,hang,garbage):\n"
    "                       kill, segv, hang, sigsys, stall, bad-id, bad-prod, bad-grant, garbage\n"
    "                       (garbage = one of the bad-* in turn)\n"
    "  --config HOST        host file for a shadowd started by the demo (default: the demo host,\n"
    "                       ../../../config/examples/demo-host/host.yaml from the shadowctl binary)\n"
    "  -j, --json           print the summary as one JSON object on stdout (the table then goes\n"
    "                       to stderr): classes, duration_s, domain, faults [{kind, cause,\n"
    "                       phases_ms, ...}], apps [{guest, device, name, exit, ...}] (one per\n"
    "                       guest device), recovered, transparent\n"
    "  -h, --help           this help\n"
    "  The global --socket PATH picks shadowd's control socket (default /run/shadowd/shadowd.sock).\n"
    "\n"
    "If no shadowd answers on the socket, the demo starts one (shadowd next to shadowctl, or\n"
    "../../dom0_shadow/shadowd; --config HOST) and shuts it down at the end; a running shadowd is\n"
    "used and left running. Needs root and iperf3. Progress goes to stderr (one line updated in\n"
    "place on a terminal).\n"
    "\n"
    "Exit status: 0 transparent (every guest's application exited 0 and every fault was recovered),\n"
    "1 not transparent or the demo could not run, 2 bad command line.\n";

namespace {

// "a, b,c" -> a, b, c; empty items kept.
std::vector<std::string> split_list(std::string s) {
  std::erase(s, ' ');
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  if (s.empty() || s.back() == ',') out.push_back("");
  return out;
}

bool parse_long(const std::string& s, long lo, long hi, long* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (errno || !end || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

int bad(const std::string& msg) {
  std::fprintf(stderr, "shadowctl: demo: %s\n", msg.c_str());
  return 2;
}

// 0 on success, else the exit status (2).
int parse_opts(const std::vector<std::string>& args, Opts* o) {
  bool have_classes = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], val;
    bool has_val = false;
    if (a.rfind("--", 0) != 0) return bad("unexpected argument '" + a + "'");
    if (auto eq = a.find('='); eq != std::string::npos) {
      val = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_val = true;
    }
    static const std::set<std::string> kOptions{"--classes", "--duration", "--faults", "--fault-kinds", "--config"};
    if (!kOptions.contains(a)) return bad("unknown option '" + a + "' (see shadowctl demo --help)");
    if (!has_val) {
      if (i + 1 >= args.size()) return bad("option " + a + " needs a value");
      val = args[++i];
    }
    if (a == "--classes") {
      have_classes = true;
      o->classes.clear();
      for (auto& c : split_list(val)) {
        if (c.empty()) return bad("--classes: empty class name in '" + val + "'");
        if (c != "vif" && c != "vsnd" && c != "vbd") return bad("--classes: unknown class '" + c + "' (vif, vsnd, vbd)");
        if (std::find(o->classes.begin(), o->classes.end(), c) != o->classes.end())
          return bad("--classes: '" + c + "' given twice");
        o->classes.push_back(c);
      }
    } else if (a == "--duration") {
      if (!parse_long(val, 1, 3600, &o->duration))
        return bad("--duration wants whole seconds 1..3600, not '" + val + "'");
    } else if (a == "--faults") {
      if (!parse_long(val, 0, 1000, &o->faults)) return bad("--faults wants a count 0..1000, not '" + val + "'");
    } else if (a == "--fault-kinds") {
      o->kinds.clear();
      for (auto& k : split_list(val)) {
        if (std::ranges::find(kFaultKinds, k) == kFaultKinds.end())
          return bad("--fault-kinds: unknown kind '" + k +
                     "' (kill, segv, hang, sigsys, stall, bad-id, bad-prod, bad-grant, garbage)");
        o->kinds.push_back(k);
      }
    } else if (a == "--config") {
      if (val.empty()) return bad("--config wants a host file");
      struct stat st{};
      if (::stat(val.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return bad("--config: no host file at '" + val + "'");
      o->config = val;
    }
  }
  if (!have_classes) return bad("--classes is required (e.g. --classes vif)");
  if (o->classes.size() > 1) return bad("--classes: one class per run (vif, vsnd or vbd)");
  return 0;
}

}  // namespace

int demo_main(const std::string& sock, bool json_out, const std::vector<std::string>& args) {
  Opts o;
  if (int rc = parse_opts(args, &o)) return rc;
  if (o.classes.front() == "vsnd") return run_aplay(sock, json_out, o);
  if (o.classes.front() == "vbd") return run_fio(sock, json_out, o);
  return run_iperf3(sock, json_out, o);
}

}  // namespace sd::tools::demo
