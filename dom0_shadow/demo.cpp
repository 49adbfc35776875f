// `shadowctl demo`: a real application runs through a guest device while
// faults are injected into the driver domain behind it; the report says what
// each fault was, how shadowd saw and recovered it, and whether the
// application noticed. Class vif: iperf3 from the guest's netns to the wire
// netns (the outside world).
//
// One thread, one poll loop: the events-follow connection to shadowd, the
// iperf3 client's and server's output, the fault schedule and the progress
// line. Faults are injected one at a time: the next waits for its scheduled
// time and for the previous one's recovery event.
#include "demo.hpp"
#include "demo_util.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sd::shadowctl {

using nlohmann::json;

// ---- Conn -------------------------------------------------------------------

Conn::~Conn() {
  if (fd_ >= 0) ::close(fd_);
}

bool Conn::open(const std::string& path) {
  if (fd_ >= 0) ::close(fd_);
  buf_.clear();
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (fd_ < 0 || path.size() >= sizeof(a.sun_path)) return false;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

bool Conn::send(const json& j) {
  std::string s = j.dump() + "\n";
  for (size_t off = 0; off < s.size();) {
    ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool Conn::fill() {
  char tmp[8192];
  for (;;) {
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof(tmp)) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;  // EOF or error
  }
}

std::optional<json> Conn::take() {
  auto nl = buf_.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  std::string line = buf_.substr(0, nl);
  buf_.erase(0, nl + 1);
  return json::parse(line, nullptr, false);
}

std::optional<json> Conn::recv() {
  for (;;) {
    if (auto j = take()) {
      if (j->is_discarded()) return std::nullopt;
      return j;
    }
    char tmp[4096];
    ssize_t n = ::read(fd_, tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

// ---- help -------------------------------------------------------------------

const char kDemoArgs[] =
    "--classes vif|vsnd|vbd [--duration S] [--faults N] [--fault-kinds K,...] [--config HOST] [--json]";

const char kDemoHelp[] =
    "usage: shadowctl demo --classes vif|vsnd|vbd [--duration S] [--faults N] [--fault-kinds K,...]\n"
    "                      [--config HOST] [--json]\n"
    "  Runs a real application through a guest device while faults are injected into the\n"
    "  driver domain behind it, then reports each fault's recovery and what the application saw.\n"
    "\n"
    "  vif: iperf3 -s -1 in the wire netns (the outside world), iperf3 -c WIRE_IP -t S -J in the\n"
    "  guest's netns; the netns names and addresses come from `shadowctl devices --json`.\n"
    "  vsnd: aplay -D shadow through the ALSA plugin of the guest's vsnd plays a marked WAV\n"
    "  (every frame names its index); per fault the gap heard is measured from the virtual DAC's\n"
    "  recording, sample-accurately (needs alsa-utils).\n"
    "  vbd: fio writes 4k blocks with crc32c and reads every one back through the guest's disk\n"
    "  (sd-blkfront: a FUSE file), pass after pass for S seconds; per fault the recovery phases\n"
    "  and the requests replayed; fio's exit codes and verify errors (needs fio).\n"
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
    "                       ../../config/examples/demo-host/host.yaml from the shadowctl binary)\n"
    "  -j, --json           print the summary as one JSON object on stdout (the table then goes\n"
    "                       to stderr): classes, duration_s, faults [{kind, cause, phases_ms, ...}],\n"
    "                       app {name, exit, bits_per_second, retransmits, bytes}, recovered,\n"
    "                       transparent\n"
    "  -h, --help           this help\n"
    "  The global --socket PATH picks shadowd's control socket (default /run/shadowd/shadowd.sock).\n"
    "\n"
    "If no shadowd answers on the socket, the demo starts one (shadowd next to shadowctl, or\n"
    "../dom0_shadow/shadowd; --config HOST) and shuts it down at the end; a running shadowd is\n"
    "used and left running. Needs root and iperf3. Progress goes to stderr (one line updated in\n"
    "place on a terminal).\n"
    "\n"
    "Exit status: 0 transparent (the application exited 0 and every fault was recovered),\n"
    "1 not transparent or the demo could not run, 2 bad command line.\n";

namespace {

// ---- options ----------------------------------------------------------------

const char* const kKinds[] = {"kill", "segv", "hang", "sigsys", "stall", "bad-id", "bad-prod", "bad-grant", "garbage"};

struct Opts {
  std::vector<std::string> classes;
  long duration = 20;
  long faults = 5;
  std::vector<std::string> kinds{"kill", "segv", "hang", "garbage"};
  std::string config;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  out.push_back(cur);
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
    static const char* const kWithValue[] = {"--classes", "--duration", "--faults", "--fault-kinds", "--config"};
    if (std::find_if(std::begin(kWithValue), std::end(kWithValue), [&](const char* k) { return a == k; }) ==
        std::end(kWithValue))
      return bad("unknown option '" + a + "' (see shadowctl demo --help)");
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
        if (std::find_if(std::begin(kKinds), std::end(kKinds), [&](const char* x) { return k == x; }) ==
            std::end(kKinds))
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

// ---- time, signals, output ----------------------------------------------------

using Clock = std::chrono::steady_clock;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

volatile sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

struct Progress {
  bool tty = ::isatty(2) == 1;
  bool drawn = false;
  Clock::time_point last{};

  void clear() {
    if (drawn) std::fprintf(stderr, "\r\033[K");
    drawn = false;
  }
  // A line that stays (a fault injected, a recovery, a warning).
  void note(const std::string& s) {
    clear();
    std::fprintf(stderr, "%s\n", s.c_str());
  }
  // The status line: in place on a terminal, every 5 s otherwise.
  void status(const std::string& s, bool force = false) {
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
};

std::string strf(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* f, ...) {
  char b[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(b, sizeof(b), f, ap);
  va_end(ap);
  return b;
}

// ---- child processes ------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  int out = -1, err = -1;  // our ends of its stdout/stderr pipes (-1: not captured)
  std::string out_buf, err_buf;
  bool exited = false;
  int status = 0;

  ~Child() {
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
  }
  bool running() const { return pid > 0 && !exited; }
  // Reaps without blocking; true once it has exited.
  bool poll_exit() {
    if (pid <= 0 || exited) return exited;
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      exited = true;
      status = st;
    }
    return exited;
  }
  bool wait_exit(double timeout_s) {
    auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    while (!poll_exit()) {
      if (Clock::now() >= end) return false;
      drain();
      ::usleep(20000);
    }
    drain();
    return true;
  }
  // TERM, then KILL if it does not go.
  void stop(double grace_s = 3) {
    if (!running()) return;
    ::kill(pid, SIGTERM);
    if (wait_exit(grace_s)) return;
    ::kill(pid, SIGKILL);
    wait_exit(5);
  }
  static void drain_fd(int& fd, std::string& buf) {
    if (fd < 0) return;
    char tmp[16384];
    for (;;) {
      ssize_t n = ::read(fd, tmp, sizeof(tmp));
      if (n > 0) {
        buf.append(tmp, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      ::close(fd);  // EOF or error
      fd = -1;
      return;
    }
  }
  void drain() {
    drain_fd(out, out_buf);
    drain_fd(err, err_buf);
  }
  // "0", "1", "killed by SIGKILL"...; -1 when signalled for exit_code().
  int exit_code() const {
    if (!exited) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return -1;
  }
  std::string exit_text() const {
    if (!exited) return "still running";
    if (WIFEXITED(status)) return std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
    return "?";
  }
};

// Starts argv in its own process group (a Ctrl-C at the terminal reaches only
// shadowctl, which then stops its children in order). stdout/stderr: captured
// through pipes when capture, else to log_fd (or /dev/null when -1).
bool spawn(Child& c, const std::vector<std::string>& argv, bool capture, int log_fd, std::string* err) {
  int po[2] = {-1, -1}, pe[2] = {-1, -1};
  if (capture && (::pipe2(po, O_CLOEXEC) != 0 || ::pipe2(pe, O_CLOEXEC) != 0)) {
    *err = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    *err = std::string("fork: ") + std::strerror(errno);
    for (int fd : {po[0], po[1], pe[0], pe[1], devnull})
      if (fd >= 0) ::close(fd);
    return false;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    int o = capture ? po[1] : (log_fd >= 0 ? log_fd : devnull);
    int e = capture ? pe[1] : (log_fd >= 0 ? log_fd : devnull);
    ::dup2(devnull, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    ::execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  if (devnull >= 0) ::close(devnull);
  if (capture) {
    ::close(po[1]);
    ::close(pe[1]);
    c.out = po[0];
    c.err = pe[0];
    ::fcntl(c.out, F_SETFL, O_NONBLOCK);
    ::fcntl(c.err, F_SETFL, O_NONBLOCK);
  }
  c.pid = pid;
  return true;
}

bool in_path(const std::string& prog) {
  const char* p = std::getenv("PATH");
  std::stringstream ss(p ? p : "/usr/sbin:/usr/bin:/sbin:/bin");
  for (std::string dir; std::getline(ss, dir, ':');)
    if (!dir.empty() && ::access((dir + "/" + prog).c_str(), X_OK) == 0) return true;
  return false;
}

std::string last_lines(const std::string& s, size_t n) {
  std::vector<std::string> lines;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) lines.push_back(l);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) out += "  " + lines[i] + "\n";
  return out;
}

// ---- shadowd ------------------------------------------------------------------

// One request on its own connection (10 s answer timeout); the answer when
// ok, else nullopt with the reason in *why.
std::optional<json> request(const std::string& sock, const json& req, std::string* why) {
  Conn c;
  if (!c.open(sock)) {
    *why = "cannot reach shadowd at " + sock + ": " + std::strerror(errno);
    return std::nullopt;
  }
  timeval tv{10, 0};
  ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (!c.send(req)) {
    *why = "lost connection to shadowd";
    return std::nullopt;
  }
  auto rep = c.recv();
  if (!rep) {
    *why = "no answer from shadowd";
    return std::nullopt;
  }
  if (!rep->contains("ok") || !(*rep)["ok"].is_boolean() || !(*rep)["ok"].get<bool>()) {
    *why = rep->value("error", std::string("request failed"));
    return std::nullopt;
  }
  return rep;
}

std::filesystem::path self_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path(".") : p.parent_path();
}

std::optional<std::filesystem::path> first_existing(std::initializer_list<std::filesystem::path> cands) {
  for (auto& c : cands) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(c, ec)) return std::filesystem::weakly_canonical(c, ec);
  }
  return std::nullopt;
}

// What the demo needs to know about one vif.
struct Vif {
  std::string device, backend, guest_ns, guest_ip, wire_ns, wire_ip;
};

std::string strip_prefix_len(const std::string& a) { return a.substr(0, a.find('/')); }

// The first vif with its topology, once it and its driver domain are up;
// nullopt (with why) while not.
std::optional<Vif> ready_vif(const std::string& sock, std::string* why) {
  auto devs = request(sock, {{"cmd", "devices"}}, why);
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
  auto st = request(sock, {{"cmd", "status"}, {"domain", v.backend}}, why);
  if (!st) return std::nullopt;
  std::string state = (*st)["domains"][0].value("state", "?");
  if (state != "running") {
    *why = "driver domain " + v.backend + " is " + state;
    return std::nullopt;
  }
  return v;
}

// A shadowd the demo started (and so stops).
struct OwnShadowd {
  Child proc;
  std::string log_path;
  int log_fd = -1;
  ~OwnShadowd() {
    if (log_fd >= 0) ::close(log_fd);
  }
};

bool start_shadowd(OwnShadowd& own, const std::string& sock, const std::string& config_opt, Progress& pr) {
  auto dir = self_dir();
  auto shadowd = first_existing({dir / "shadowd", dir / ".." / "dom0_shadow" / "shadowd"});
  if (!shadowd) {
    pr.note("shadowctl: demo: no shadowd answers at " + sock + " and no shadowd binary next to shadowctl (" +
            dir.string() + ") to start one");
    return false;
  }
  std::filesystem::path host;
  if (!config_opt.empty()) {
    host = config_opt;
  } else if (auto h = first_existing({dir / ".." / ".." / "config" / "examples" / "demo-host" / "host.yaml"})) {
    host = *h;
    std::string why;
    if (!demo::ensure_demo_disk(&why)) {  // guest1's disk must exist for shadowd to start
      pr.note("shadowctl: demo: " + why);
      return false;
    }
  } else {
    pr.note("shadowctl: demo: no shadowd answers at " + sock +
            " and the demo host file was not found from the shadowctl binary; give --config HOST");
    return false;
  }
  char tmpl[] = "/tmp/shadowctl-demo-shadowd-XXXXXX.log";
  own.log_fd = ::mkstemps(tmpl, 4);
  if (own.log_fd >= 0) {
    ::fcntl(own.log_fd, F_SETFD, FD_CLOEXEC);
    own.log_path = tmpl;
  }
  std::vector<std::string> argv{shadowd->string(), "--config", host.string(), "--socket", sock};
  pr.note("demo: starting " + shadowd->string() + " --config " + host.string() +
          (own.log_path.empty() ? "" : " (log: " + own.log_path + ")"));
  std::string why;
  if (!spawn(own.proc, argv, false, own.log_fd, &why)) {
    pr.note("shadowctl: demo: cannot start shadowd: " + why);
    return false;
  }
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Shuts down a shadowd the demo started: the shutdown request, then TERM,
// then KILL. True if it exited 0.
bool stop_shadowd(OwnShadowd& own, const std::string& sock, Progress& pr) {
  if (!own.proc.running() && own.proc.poll_exit()) {
    pr.note("demo: shadowd had already exited (" + own.proc.exit_text() + ")");
    return false;
  }
  std::string why;
  bool asked = request(sock, {{"cmd", "shutdown"}}, &why).has_value();
  if (!asked || !own.proc.wait_exit(15)) {
    pr.note("demo: shadowd did not stop on request" + (asked ? std::string() : " (" + why + ")") +
            "; sending SIGTERM");
    own.proc.stop(10);
  }
  bool clean = own.proc.exited && own.proc.exit_code() == 0;
  if (clean) {
    if (!own.log_path.empty()) ::unlink(own.log_path.c_str());
    pr.note("demo: stopped the shadowd it started");
  } else {
    pr.note("demo: shadowd exited with " + own.proc.exit_text() + "; its log: " + own.log_path);
  }
  return clean;
}

// ---- the run ----------------------------------------------------------------------

struct Fault {
  std::string kind;
  double sched_s = 0;
  double at_s = -1;  // injected at (s after the application started); -1: not injected
  Clock::time_point at;
  double observed_ms = -1;  // inject request sent -> recovery event received, as the demo saw it
  bool anchored = false;  // its fault_injected event has been seen
  bool recovered = false;
  double recovered_s = -1;
  std::string cause, died_cause, note;
  json phases = nullptr;
  json interval = nullptr;  // the application's report for the interval the fault hit
};

constexpr double kRecoveryTimeoutS = 20;  // longer than a start timeout (10 s) plus backoff

std::string fmt_ms(const json& v) {
  if (!v.is_number()) return "-";
  return strf("%.2f", v.get<double>());
}

}  // namespace

int demo_main(const std::string& sock, bool json_out, const std::vector<std::string>& args) {
  Opts o;
  if (int rc = parse_opts(args, &o)) return rc;
  if (o.classes.front() == "vsnd") return demo_vsnd(sock, json_out, o.duration, o.faults, o.kinds, o.config);
  if (o.classes.front() == "vbd") return demo_vbd(sock, json_out, o.duration, o.faults, o.kinds, o.config);
  Progress pr;

  if (::geteuid() != 0) {
    std::fprintf(stderr, "shadowctl: demo: needs root (it runs shadowd and enters network namespaces)\n");
    return 1;
  }
  for (const char* prog : {"iperf3", "ip"})
    if (!in_path(prog)) {
      std::fprintf(stderr, "shadowctl: demo: %s not found in PATH (scripts/deps.sh installs it)\n", prog);
      return 1;
    }

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
  bool started = false;
  if (!request(sock, {{"cmd", "list"}}, &why)) {
    if (!start_shadowd(own, sock, o.config, pr)) return 1;
    started = true;
  } else {
    pr.note("demo: using the shadowd running at " + sock + " (left running)");
    if (!o.config.empty()) pr.note("demo: --config is ignored: a shadowd is already running");
  }
  auto fail_setup = [&](const std::string& msg) {
    pr.note("shadowctl: demo: " + msg);
    if (started) {
      if (own.proc.poll_exit()) {
        pr.note("shadowd exited with " + own.proc.exit_text() + "; its log (" + own.log_path + "):\n" +
                last_lines(read_file(own.log_path), 20));
      } else {
        stop_shadowd(own, sock, pr);
      }
    }
    return 1;
  };

  // ---- wait until the vif and its driver domain are up.
  std::optional<Vif> vif;
  auto ready_by = Clock::now() + std::chrono::seconds(30);
  while (!(vif = ready_vif(sock, &why))) {
    if (g_interrupted) return fail_setup("interrupted");
    if (started && own.proc.poll_exit()) return fail_setup("shadowd did not come up");
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

  // ---- the faults' schedule.
  std::vector<Fault> faults(static_cast<size_t>(o.faults));
  for (size_t i = 0; i < faults.size(); ++i) {
    faults[i].kind = o.kinds[i % o.kinds.size()];
    faults[i].sched_s = static_cast<double>(i + 1) * static_cast<double>(o.duration) / static_cast<double>(o.faults + 1);
  }

  pr.note(strf("demo vif: iperf3 from %s (%s, netns %s) to %s (netns %s) for %ld s; %zu fault(s) into %s",
               vif->device.c_str(), vif->guest_ip.c_str(), vif->guest_ns.c_str(), vif->wire_ip.c_str(),
               vif->wire_ns.c_str(), o.duration, faults.size(), dom.c_str()));

  // ---- the application: server in the wire netns, then the client in the guest's.
  Child server, client;
  if (!spawn(server, {"ip", "netns", "exec", vif->wire_ns, "iperf3", "-s", "-1", "--forceflush"}, true, -1, &why))
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
  if (!spawn(client, {"ip", "netns", "exec", vif->guest_ns, "iperf3", "-c", vif->wire_ip, "-t", dur, "-J"}, true, -1,
             &why)) {
    server.stop();
    return fail_setup("cannot start the iperf3 client: " + why);
  }
  const auto t0 = Clock::now();
  auto elapsed = [&] { return secs(Clock::now() - t0); };
  const double hard_end_s = static_cast<double>(o.duration) + 30;  // the client gets this long, then is killed

  size_t next = 0;       // next fault to inject
  long cur = -1;         // fault waiting for its recovery
  Clock::time_point retry_at{};
  size_t recovered = 0;
  std::vector<json> unexpected;  // recoveries no injected fault accounts for
  std::vector<std::string> notes;
  bool events_open = true, fenced = false, client_killed = false, interrupted = false;

  auto status_line = [&](bool force) {
    double e = elapsed(), d = static_cast<double>(o.duration);
    std::string over = client.running() && e > d + 1 ? strf(" (iperf3 %.0f s over its run time)", e - d) : "";
    pr.status(strf("demo vif: %.1f/%ld s, faults %zu/%zu, recovered %zu%s", std::min(e, d), o.duration, next,
                   faults.size(), recovered, over.c_str()),
              force);
  };

  auto on_event = [&](const json& ev) {
    if (!ev.is_object() || ev.value("domain", "") != dom) return;
    std::string type = ev.value("type", "");
    Fault* f = cur >= 0 ? &faults[static_cast<size_t>(cur)] : nullptr;
    if (type == "fault_injected") {
      if (f && !f->anchored) f->anchored = true;
    } else if (type == "domain_died" || type == "fault_detected") {
      if (f && f->anchored && f->died_cause.empty()) f->died_cause = ev.value("cause", "");
    } else if (type == "domain_fenced") {
      fenced = true;
      notes.push_back(dom + " was fenced (restart budget spent)");
      pr.note("demo vif: " + dom + " fenced: no more restarts");
      if (f) f->note = "fenced";
      cur = -1;
    } else if (type == "recovery") {
      if (f && f->anchored && !f->recovered) {
        f->recovered = true;
        f->recovered_s = elapsed();
        f->observed_ms = secs(Clock::now() - f->at) * 1000;
        f->cause = ev.value("cause", f->died_cause);
        f->phases = ev.contains("phases_ms") ? ev["phases_ms"] : json(nullptr);
        ++recovered;
        pr.note(strf("demo vif: %.1f s: fault %ld (%s) recovered: %s, total %s ms", f->recovered_s, cur + 1,
                     f->kind.c_str(), f->cause.c_str(), fmt_ms(f->phases.is_object() ? f->phases.value("total", json())
                                                                                    : json())
                                                            .c_str()));
        cur = -1;
      } else {
        unexpected.push_back(ev);
        pr.note("demo vif: recovery not caused by the demo: " + ev.value("cause", std::string("?")));
      }
    }
  };

  auto pump_events = [&](int timeout_ms) {
    std::vector<pollfd> fds;
    if (events_open) fds.push_back({events.fd(), POLLIN, 0});
    if (client.out >= 0) fds.push_back({client.out, POLLIN, 0});
    if (client.err >= 0) fds.push_back({client.err, POLLIN, 0});
    if (server.out >= 0) fds.push_back({server.out, POLLIN, 0});
    if (server.err >= 0) fds.push_back({server.err, POLLIN, 0});
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
        if (!m->is_discarded() && m->contains("event")) on_event((*m)["event"]);
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
    // A fault whose recovery never comes.
    if (cur >= 0 && secs(Clock::now() - faults[static_cast<size_t>(cur)].at) > kRecoveryTimeoutS) {
      faults[static_cast<size_t>(cur)].note = strf("no recovery within %.0f s", kRecoveryTimeoutS);
      pr.note(strf("demo vif: fault %ld: no recovery within %.0f s", cur + 1, kRecoveryTimeoutS));
      cur = -1;
    }
    // The next fault: at its time, after the previous one's recovery.
    if (cur < 0 && next < faults.size() && e >= faults[next].sched_s && Clock::now() >= retry_at && events_open &&
        !fenced) {
      Fault& f = faults[next];
      auto sent = Clock::now();
      auto r = request(sock, {{"cmd", "inject-fault"}, {"domain", dom}, {"kind", f.kind}}, &why);
      if (r) {
        f.at = sent;
        f.at_s = secs(sent - t0);
        cur = static_cast<long>(next);
        ++next;
        pr.note(strf("demo vif: %.1f s: fault %zu/%zu: %s into %s", f.at_s, next, faults.size(), f.kind.c_str(),
                     dom.c_str()));
      } else if (why.find("not running") != std::string::npos && e < f.sched_s + kRecoveryTimeoutS) {
        retry_at = Clock::now() + std::chrono::milliseconds(50);  // between incarnations: try again
      } else {
        f.note = "not injected: " + why;
        pr.note(strf("demo vif: fault %zu (%s) not injected: %s", next + 1, f.kind.c_str(), why.c_str()));
        ++next;
      }
    }
    status_line(false);
  }
  client.drain();
  const double app_end_s = elapsed();
  for (size_t i = next; i < faults.size(); ++i)
    if (faults[i].note.empty())
      faults[i].note = fenced        ? "not injected: " + dom + " is fenced"
                       : !events_open ? std::string("not injected: lost the events stream")
                       : interrupted  ? std::string("not injected: interrupted")
                                      : std::string("not injected: iperf3 ended first");

  // The last fault's recovery, if it is still under way.
  while (cur >= 0 && events_open && !g_interrupted &&
         secs(Clock::now() - faults[static_cast<size_t>(cur)].at) < kRecoveryTimeoutS) {
    pump_events(100);
    status_line(false);
  }
  if (cur >= 0 && faults[static_cast<size_t>(cur)].note.empty())
    faults[static_cast<size_t>(cur)].note = g_interrupted ? "interrupted before recovery" : "no recovery seen";
  status_line(true);
  pr.clear();

  // The server exits after its one test; give it a moment, then stop it.
  if (!server.wait_exit(3)) server.stop(2);

  // ---- the application's report.
  json app{{"name", "iperf3"}, {"exit", client.exited ? json(client.exit_code()) : json(nullptr)}};
  std::string app_error;
  auto rep = json::parse(client.out_buf, nullptr, false);
  if (rep.is_object()) {
    const json& end = rep.contains("end") ? rep["end"] : json::object();
    const json& rcv = end.contains("sum_received") ? end["sum_received"] : json::object();
    const json& snd = end.contains("sum_sent") ? end["sum_sent"] : json::object();
    app["bits_per_second"] = rcv.contains("bits_per_second") ? rcv["bits_per_second"] : json(nullptr);
    app["bytes"] = rcv.contains("bytes") ? rcv["bytes"] : json(nullptr);
    app["retransmits"] = snd.contains("retransmits") ? snd["retransmits"] : json(nullptr);
    app["sender_bits_per_second"] = snd.contains("bits_per_second") ? snd["bits_per_second"] : json(nullptr);
    if (rep.contains("error") && rep["error"].is_string()) app_error = rep["error"].get<std::string>();
    // Each fault's interval.
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
  } else {
    app["bits_per_second"] = nullptr;
    app["bytes"] = nullptr;
    app["retransmits"] = nullptr;
    app_error = "no JSON report from iperf3";
  }
  if (client_killed) app_error += std::string(app_error.empty() ? "" : "; ") + "killed after the time limit";
  std::string client_stderr = last_lines(client.err_buf, 5);
  if (app_error.empty() && !client_stderr.empty() && client.exit_code() != 0) app_error = client_stderr;
  app["error"] = app_error.empty() ? json(nullptr) : json(app_error);
  bool app_ok = client.exited && client.exit_code() == 0 && app_error.empty();

  bool all_recovered = recovered == faults.size();
  bool transparent = app_ok && all_recovered && !interrupted;

  // ---- shadowd: stop the one we started.
  bool shadowd_clean = true;
  if (started) {
    shadowd_clean = stop_shadowd(own, sock, pr);
    // What shadowd set up for the demo host should be gone with it.
    for (const auto& ns : {vif->guest_ns, vif->wire_ns, "sd-" + dom}) {
      std::error_code ec;
      if (std::filesystem::exists("/run/netns/" + ns, ec))
        notes.push_back("netns " + ns + " is still there after shadowd stopped");
    }
  }
  if (!shadowd_clean) notes.push_back("the shadowd started by the demo did not stop cleanly");

  // ---- report: the table (stderr with --json), then the JSON object.
  FILE* out = json_out ? stderr : stdout;
  std::fprintf(out, "\ndemo vif: iperf3 -c %s -t %ld -J in netns %s (%s), server in netns %s; driver domain %s\n\n",
               vif->wire_ip.c_str(), o.duration, vif->guest_ns.c_str(), vif->device.c_str(), vif->wire_ns.c_str(),
               dom.c_str());
  std::fprintf(out, "%3s  %-9s %6s  %8s %8s %8s %8s %8s %8s  %7s %5s  %s\n", "#", "kind", "at s", "detect", "spawn",
               "replay", "resume", "total", "seen", "Gbit/s", "retr", "cause as detected");
  for (size_t i = 0; i < faults.size(); ++i) {
    const Fault& f = faults[i];
    auto ph = [&](const char* k) { return fmt_ms(f.phases.is_object() && f.phases.contains(k) ? f.phases[k] : json()); };
    std::string at = f.at_s >= 0 ? strf("%.2f", f.at_s) : "-";
    std::string gbit = "-", retr = "-";
    if (f.interval.is_object()) {
      gbit = strf("%.2f", f.interval.value("bits_per_second", 0.0) / 1e9);
      if (f.interval["retransmits"].is_number()) retr = std::to_string(f.interval["retransmits"].get<long long>());
    }
    std::string cause = f.recovered ? f.cause : (!f.died_cause.empty() ? f.died_cause + "; " : "") + f.note;
    if (f.recovered && !f.note.empty()) cause += " (" + f.note + ")";
    std::string seen = f.observed_ms >= 0 ? strf("%.2f", f.observed_ms) : "-";
    std::fprintf(out, "%3zu  %-9s %6s  %8s %8s %8s %8s %8s %8s  %7s %5s  %s\n", i + 1, f.kind.c_str(), at.c_str(),
                 ph("detect").c_str(), ph("spawn").c_str(), ph("replay").c_str(), ph("resume").c_str(),
                 ph("total").c_str(), seen.c_str(), gbit.c_str(), retr.c_str(), cause.empty() ? "-" : cause.c_str());
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
  if (!unexpected.empty()) {
    std::fprintf(out, "recoveries not caused by the demo: %zu\n", unexpected.size());
    for (auto& ev : unexpected)
      std::fprintf(out, "  cause %s, total %s ms\n", ev.value("cause", std::string("?")).c_str(),
                   fmt_ms(ev.contains("phases_ms") && ev["phases_ms"].is_object() ? ev["phases_ms"].value("total", json())
                                                                                  : json())
                       .c_str());
  }
  for (auto& n : notes) std::fprintf(out, "note: %s\n", n.c_str());
  std::fprintf(out, "recovered %zu/%zu faults; transparent: %s\n", recovered, faults.size(),
               transparent ? "yes (iperf3 exited 0 and every fault was recovered)" : "NO");
  std::fflush(out);

  if (json_out) {
    json jf = json::array();
    for (size_t i = 0; i < faults.size(); ++i) {
      const Fault& f = faults[i];
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
    for (auto& ev : unexpected) unexp.push_back({{"cause", ev.value("cause", "")}, {"phases_ms", ev.value("phases_ms", json())}});
    json summary{{"classes", o.classes},
                 {"duration_s", o.duration},
                 {"app_run_s", std::round(app_end_s * 1000) / 1000},
                 {"device", vif->device},
                 {"domain", dom},
                 {"guest", {{"ns", vif->guest_ns}, {"addr", vif->guest_ip}}},
                 {"wire", {{"ns", vif->wire_ns}, {"addr", vif->wire_ip}}},
                 {"shadowd", started ? "started" : "running"},
                 {"faults", jf},
                 {"app", app},
                 {"recovered", recovered},
                 {"unexpected_recoveries", unexp},
                 {"notes", notes},
                 {"transparent", transparent}};
    std::printf("%s\n", summary.dump().c_str());
    std::fflush(stdout);
  }
  return transparent ? 0 : 1;
}

}  // namespace sd::shadowctl
