"""What the benchmarks (vif_bench.py, vsnd_bench.py, vbd_bench.py, devices_bench.py) share.

A private shadowd per run (its host config, start, control, stop), the
percentiles their tables print, progress on stderr and the run's header line.
One copy here, so that a change of shadowd's config, of shadowctl or of how a
percentile is taken reaches the three benchmarks alike.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_of(build):
    """The source tree `build` was configured from (its shipped policies match its shadowd: --compare runs
    an older build beside this one); this checkout if the cache does not say."""
    try:
        for line in open(os.path.join(build, "CMakeCache.txt")):
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return ROOT


def pct(values, p):
    """The p-th percentile, nearest rank; nan when there are no values (a table row still prints)."""
    v = sorted(values)
    if not v:
        return float("nan")
    i = min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))
    return v[i]


def pmax(values):
    """max(), nan when there are no values."""
    return max(values) if values else float("nan")


def progress(msg):
    """How far the run is, on stderr so that stdout holds only the tables. On a terminal each message
    replaces the previous one; progress("") clears the line before a table is printed."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + msg)
    elif msg:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def cpu_busy():
    """(busy, total) jiffies of the whole machine so far, from /proc/stat: two readings give the CPU % between."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def loadavg():
    """The 1-minute load average: the figures only mean something on an idle machine, so the run says how busy
    it was."""
    return open("/proc/loadavg").read().split()[0]


def header(cls):
    """The first line of every benchmark's output: what, when, on how many CPUs, how busy."""
    print("%s recovery benchmark, local platform, %s, %d CPUs, load average %s"
          % (cls, time.strftime("%Y-%m-%d"), os.cpu_count(), loadavg()))


def arguments(doc):
    """The command line every benchmark takes (--build); the script adds its own options."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", type=os.path.abspath, default=os.path.join(ROOT, "build"), metavar="DIR",
                    help="the build tree with shadowd and the helpers (default: build/)")
    return ap


def add_compare(ap):
    """--compare: the same cases on this build and on another (a build of the commit before a change),
    alternating round by round; what the figures of a change in docs/BENCHMARKS.md come from."""
    ap.add_argument("--compare", type=os.path.abspath, metavar="DIR",
                    help="run the normal-mode cases on this build and on the build tree DIR, alternating, and print "
                         "each side's rounds, medians and the ratio (this build / DIR)")
    ap.add_argument("--case", metavar="TEXT", help="with --compare: only the cases whose name contains TEXT")


def compare(builds, cases, open_host, measure, rounds):
    """Each case on one host per build, alternating which goes first round by round: per build the value of each
    round and the median, and the first build's median over the second's. open_host(build, i) gives a host with
    close(); measure(host, case) one value."""
    hosts = []
    try:
        for i, b in enumerate(builds):
            hosts.append(open_host(b, i))
        res = {c: [[] for _ in builds] for c in cases}
        for r in range(rounds):
            order = list(range(len(builds))) if r % 2 == 0 else list(range(len(builds)))[::-1]
            for c in cases:
                for i in order:
                    progress("compare: %s, %s, round %d/%d" % (c, builds[i], r + 1, rounds))
                    res[c][i].append(measure(hosts[i], c))
    finally:
        for h in hosts:
            h.close()
    progress("")
    print("\nCompare, %d rounds per case, alternating; load average %s" % (rounds, loadavg()))
    for c in cases:
        med = [statistics.median(v) for v in res[c]]
        print("%s: ratio %.3f" % (c, med[0] / med[1] if med[1] else float("nan")))
        for b, v, m in zip(builds, res[c], med):
            print("  %-40s median %10.3f   rounds %s" % (b, m, " ".join("%.3f" % x for x in v)))
    return res


def soak(host, seconds, start):
    """Runs the workload `start()` starts (a Popen) for up to `seconds` with no fault injected, while two busy
    loops per CPU load the machine: every recovery meanwhile is a false positive of the hang checks. Returns
    the workload (to collect) and the load averages seen, one per 5 s."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    seen = []
    try:
        p = start()
        end = time.time() + seconds
        while p.poll() is None and time.time() < end:
            time.sleep(max(0.0, min(5.0, end - time.time())))
            seen.append(os.getloadavg()[0])
            progress("  soak: %d of %d s, recoveries so far %d" % (
                seconds - max(0, int(end - time.time())), seconds, len(host.recoveries())))
        return p, seen
    finally:
        for x in busy:
            x.kill()
            x.wait()


def require_root(why="shadowd sandboxes its driver domains"):
    if os.geteuid() != 0:
        raise SystemExit("run as root (%s)" % why)


class Host:
    """One shadowd on the local platform with one driver domain and one guest, in a directory of its own and
    with names of its own, so that several run side by side (splitter log on vs off) without meeting.

    The policy is the shipped one with a large restart budget (a benchmark kills the driver many times a
    minute) and the standby or zygote as asked. A subclass adds the guest's device and calls start()."""

    def __init__(self, build, cls, dom, guest, budget=1000, standby=False, zygote=False):
        self.build, self.cls, self.dom, self.guest = build, cls, dom, guest
        self.dir = tempfile.mkdtemp(prefix="sd-%sbench-" % cls)
        self.sock = os.path.join(self.dir, "sd.sock")
        self.state = os.path.join(self.dir, "state")
        self.events = os.path.join(self.dir, "events.jsonl")
        self.proc = None
        pol = os.path.join(self.dir, "policies")
        shutil.copytree(os.path.join(source_of(build), "config", "policies"), pol)
        path = os.path.join(pol, cls + ".yaml")
        y = open(path).read().replace("budget: 20 ", "budget: %d " % budget)
        y = y.replace("standby: false", "standby: %s" % ("true" if standby else "false"))
        y = re.sub(r"(?m)^zygote: (true|false)", "zygote: %s" % ("true" if zygote else "false"), y)
        open(path, "w").write(y)

    def start(self, device, dd_memory=128, log_on=True, host_extra=""):
        """Writes the driver domain's and the guests' xl configs and the host config, and starts shadowd;
        SD_SPLITTER_LOG=off when log_on is false. `device` is the guest's device line, or a list of
        (guest name, device line), one guest each, all on the one driver domain."""
        open(os.path.join(self.dir, "dd.cfg"), "w").write(
            'name = "%s"\ndriver_domain = 1\nmemory = %d\n' % (self.dom, dd_memory))
        guests = device if isinstance(device, list) else [(self.guest, device)]
        for i, (name, line) in enumerate(guests):
            open(os.path.join(self.dir, "g%d.cfg" % i), "w").write('name = "%s"\nmemory = 256\n%s\n' % (name, line))
        open(os.path.join(self.dir, "host.yaml"), "w").write(
            "platform: local\npolicy_dir: policies\ncontrol_socket: %s\nstate_dir: %s\nevent_log: %s\n%s"
            "domains: [dd.cfg]\nguests: [%s]\n" % (self.sock, self.state, self.events, host_extra,
                                                    ", ".join("g%d.cfg" % i for i in range(len(guests)))))
        env = dict(os.environ)
        if not log_on:
            env["SD_SPLITTER_LOG"] = "off"
        self.proc = subprocess.Popen([os.path.join(self.build, "dom0_shadow", "shadowd"), "--config",
                                      os.path.join(self.dir, "host.yaml")], env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "shadowd.log"), "w"))

    def wait(self, pred, what, timeout=20.0):
        """Polls pred() until it holds; else closes this host (nothing of it keeps running: the caller never
        got it to close) and stops the run with shadowd's log."""
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                if pred():
                    return
                time.sleep(0.05)
            raise SystemExit(what + ": " + open(os.path.join(self.dir, "shadowd.log")).read())
        except BaseException:  # also pred's own (no shadowctl in a --build tree)
            try:
                self.close()
            except Exception:  # a subclass's part half made: shadowd at least
                Host.close(self)
            raise

    def ctl(self, *args):
        """One shadowctl command; its JSON answer, {} when it failed."""
        r = subprocess.run([os.path.join(self.build, "tools", "shadowctl", "shadowctl"), "--socket", self.sock, "--json"]
                           + list(args), capture_output=True, text=True)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else {}
        except ValueError:
            return {}

    def status(self):
        """The driver domain's status (state, pid, restarts, standby)."""
        d = self.ctl("status", self.dom).get("domains", [{}])
        return d[0] if d else {}

    def detail(self):
        """The guest device's class-specific detail (backend_up, frontend_connected, ...)."""
        d = self.ctl("devices").get("devices", [{}])
        return d[0].get("detail", {}) if d else {}

    def recoveries(self):
        """Every recovery event so far, from the event log (phases_ms per recovery)."""
        out = []
        if os.path.exists(self.events):
            for line in open(self.events):
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if e.get("type") == "recovery":
                    out.append(e)
        return out

    def wait_recoveries(self, n, timeout=10.0):
        """Until n recoveries are done (so that the next fault does not strike one in progress)."""
        deadline = time.time() + timeout
        while len(self.recoveries()) < n and time.time() < deadline:
            time.sleep(0.01)

    def kill_driver(self):
        """kill -9 of the driver domain from outside shadowd, as a crash; the time of the kill
        (CLOCK_MONOTONIC ns), None when no driver domain runs."""
        pid = self.status().get("pid")
        if not pid:
            return None
        t = time.monotonic_ns()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return t

    def inject(self, kind):
        """A fault into the running driver domain: "kill" is kill -9 from outside, as a crash; the others
        (segv, hang, stall, ...) shadowd injects. The time of it (CLOCK_MONOTONIC ns), None when no driver
        domain runs."""
        if kind == "kill":
            return self.kill_driver()
        if not self.status().get("pid"):
            return None
        t = time.monotonic_ns()
        self.ctl("inject-fault", self.dom, kind)
        return t

    def close(self):
        """Stops shadowd (it stops its driver domains) and removes the directory; once."""
        if self.proc:
            try:
                self.ctl("shutdown")
            except OSError:  # a build tree without shadowctl: SIGTERM stops shadowd as cleanly
                self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
