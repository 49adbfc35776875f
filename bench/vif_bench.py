#!/usr/bin/env python3
"""vif recovery benchmark (local platform). Prints tables; asserts nothing.

Side by side in one run, as in the seed's table:
  no shadow       restart budget 0: the driver domain is not restarted
  restart only    restarted, but no splitter log: in-flight requests are lost
  shadow (cold)   restarted + replay from the splitter log
  shadow+zygote   a spare domain, started with no devices, is promoted; the devices attach + replay
  shadow+standby  a warm standby domain (devices pre-attached) is promoted + replay

Per kill -9 of the net driver domain it measures the outage the application
sees: a UDP stream (2000 datagrams/s, guest -> wire) is timestamped on
arrival; the outage is from the kill to the arrival of the first datagram
sent after the kill (datagrams carry their send time). It also runs iperf3 TCP across kills, and
compares normal-mode throughput and CPU with the splitter log on and off.

Normal mode: iperf3 TCP 1 and 4 streams both ways and UDP 64-byte datagrams, through the vif with the
splitter log on and off and over a plain veth pair in the same run, with the ratios and CPU per unit.

Retransmissions: iperf3 TCP 20 s with 10 kills against 20 s without, alternating, on one shadowed vif: a
kill whose frames are replayed whole costs TCP nothing, so the two should match.

usage: bench/vif_bench.py [--build DIR] [--kills N] [--faults kill,segv,hang] [--quick] [--normal-only]
       [--recovery-only] [--retrans-only] [--soak SECONDS] [--json PATH]
       bench/vif_bench.py [--build DIR] --compare OTHER_DIR [--case TEXT] [--rounds N] [--quick]
--compare runs the normal-mode cases on two build trees, one shadowed vif each, alternating round by round, and
prints each side's rounds, medians and their ratio.
Run as root, with nothing else heavy running.
"""
import bisect
import json
import os
import statistics
import subprocess
import time

import sdbench
from sdbench import Host, add_compare, compare, cpu_busy, arguments, header, loadavg, pct, progress, require_root


class VifHost(Host):
    """A net driver domain and a guest whose vif reaches a wire namespace, on a subnet of its own."""

    def __init__(self, build, tag, subnet, standby=False, budget=1000, log_on=True, zygote=False):
        super().__init__(build, "vif", "bn%s" % tag, "bg%s" % tag, budget=budget, standby=standby, zygote=zygote)
        self.spare = standby or zygote
        self.wire = "bw%s" % tag
        self.base_restarts = 0  # restarts before this measurement: outages() waits for each next one
        self.guest_ip, self.wire_ip = "10.250.%d.2" % subnet, "10.250.%d.1" % subnet
        self.start("vif = [ 'backend=%s,mac=00:16:3e:5d:%02x:02,ip=%s' ]" % (self.dom, subnet, self.guest_ip),
                   dd_memory=256, log_on=log_on, host_extra="wire_netns: %s\n" % self.wire)

        def up():
            st = self.status()
            return st.get("state") == "running" and (not (standby or zygote) or st.get("standby") == "ready")
        self.wait(up, "shadowd did not come up")
        time.sleep(0.3)

    def wait_restarts(self, n, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.status()
            if st.get("restarts", 0) >= n and st.get("state") == "running":
                return True
            time.sleep(0.01)
        return False


class VethPeer:
    """The host's own path, for comparison in the same run: two network namespaces joined by a plain veth
    pair, no driver domain and no shadow (the same iperf3 as through the shadowed vif)."""

    def __init__(self, tag, subnet):
        self.guest, self.wire = "pg%s" % tag, "pw%s" % tag
        self.wire_ip = "10.250.%d.1" % subnet
        for ns in (self.guest, self.wire):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(netns(ns, "ip", "link", "set", "lo", "up"), check=True)
        subprocess.run(["ip", "link", "add", "pa%s" % tag, "netns", self.guest, "type", "veth", "peer", "name",
                        "pb%s" % tag, "netns", self.wire], check=True)
        for ns, dev, ip in ((self.guest, "pa%s" % tag, "10.250.%d.2/24" % subnet),
                            (self.wire, "pb%s" % tag, self.wire_ip + "/24")):
            subprocess.run(netns(ns, "ip", "addr", "add", ip, "dev", dev), check=True)
            subprocess.run(netns(ns, "ip", "link", "set", dev, "up"), check=True)

    def close(self):
        for ns in (self.guest, self.wire):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def netns(ns, *cmd):
    return ["ip", "netns", "exec", ns] + list(cmd)


def outages(host, build, kills, spacing=0.3, rate=2000, fault="kill"):
    """Injects `fault` into the driver `kills` times under a UDP stream; per fault the outage in ms, the
    datagrams lost and sent, the worst delays, and (the faults' times, the arrivals) for trace()."""
    probe = os.path.join(build, "bench", "udp_probe")
    # Each kill also waits for the restart and queries shadowctl: allow for it.
    dur = 2.0 + kills * (spacing + 0.3) + 1.0
    recv = subprocess.Popen(netns(host.wire, probe, "recv", "9999", str(dur + 1.5)), stdout=subprocess.PIPE, text=True)
    recv.stdout.readline()  # "ready"
    send = subprocess.Popen(netns(host.guest, probe, "send", host.wire_ip, "9999", str(rate), str(dur)))
    time.sleep(1.0)
    kill_times = []
    for i in range(kills):
        t = host.inject(fault)
        if t is not None:
            kill_times.append(t)
        host.wait_restarts(i + 1 + host.base_restarts)
        if host.spare:  # each fault meets a ready spare
            host.wait(lambda: host.status().get("standby") == "ready", "the spare driver domain did not come back")
        progress("  %s %d/%d" % (fault, i + 1, kills))
        time.sleep(spacing)
    send.terminate()  # done with the kills: stop the stream early
    send.wait()
    recs = []  # (sent_ns, arrival_ns, seq)
    for line in recv.stdout:
        parts = line.split()
        if len(parts) == 3:
            recs.append((int(parts[1]), int(parts[2]), int(parts[0])))
    recv.wait()
    recs.sort()
    seqs = set(r[2] for r in recs)
    sent = max(seqs) + 1 if seqs else 0
    arrivals = sorted(r[1] for r in recs)
    out, worst = [], []
    for k, tk in enumerate(kill_times):
        until = kill_times[k + 1] if k + 1 < len(kill_times) else tk + 500_000_000
        # Outage: the longest the wire saw nothing, from the last arrival
        # before the fault to the next fault (a fault shadowd injects takes
        # effect a little after it is asked for, so the time of asking
        # cannot be the start; at 2000 datagrams/s a gap is 0.5 ms when all
        # is well).
        lo, hi = bisect.bisect_left(arrivals, tk), bisect.bisect_left(arrivals, until)
        seen = arrivals[max(0, lo - 1):hi]
        after = [r for r in recs if tk <= r[0] < until]
        if len(seen) > 1 and after:
            out.append(max(y - x for x, y in zip(seen, seen[1:])) / 1e6)
            worst.append(max(r[1] - r[0] for r in after) / 1e6)
    lost = sum(1 for s in range(sent) if s not in seqs)
    return out, lost, sent, worst, (kill_times, arrivals)


def trace(kill_times, arrivals, recs):
    """Where a kill's outage goes, per kill (ms): the kill until shadowd saw the death (served_mono_ns less
    its total), shadowd's phases, and its last device serving until the wire's next datagram."""
    out = {"notice": [], "shadowd": [], "first frame": []}
    for tk, r in zip(kill_times, recs):
        served, total = r.get("served_mono_ns"), r["phases_ms"].get("total")
        k = bisect.bisect_left(arrivals, served or 0)
        if not served or not isinstance(total, (int, float)) or k == len(arrivals):
            continue
        out["notice"].append((served - total * 1e6 - tk) / 1e6)
        out["shadowd"].append(total)
        out["first frame"].append((arrivals[k] - served) / 1e6)
    return out


def iperf_across_kills(host, build, seconds=10, kills=5, port=5301):
    srv = subprocess.Popen(netns(host.wire, "iperf3", "-s", "-1", "-p", str(port)), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(0.4)
    cli = subprocess.Popen(netns(host.guest, "timeout", str(seconds + 20), "iperf3", "-c", host.wire_ip, "-p",
                                 str(port), "-t", str(seconds), "-J"), stdout=subprocess.PIPE, text=True)
    for i in range(kills):
        time.sleep(seconds / (kills + 1))
        host.kill_driver()  # does nothing when no driver runs (fenced)
    out, _ = cli.communicate()
    srv.kill()
    srv.wait()
    res = {"exit": cli.returncode, "gbps": 0.0, "retransmits": None, "error": None}
    try:
        j = json.loads(out)
        res["error"] = j.get("error")
        end = j.get("end", {})
        res["gbps"] = end.get("sum_received", {}).get("bits_per_second", 0) / 1e9
        res["retransmits"] = end.get("sum_sent", {}).get("retransmits")
    except ValueError:
        res["error"] = "no JSON from iperf3"
    return res


# Normal-mode cases: iperf3 arguments, and what is measured.
CASES = [
    ("tcp, 1 stream, guest -> wire", [], "Gbit/s"),
    ("tcp, 4 streams, guest -> wire", ["-P", "4"], "Gbit/s"),
    ("tcp, 1 stream, wire -> guest", ["-R"], "Gbit/s"),
    ("tcp, 4 streams, wire -> guest", ["-P", "4", "-R"], "Gbit/s"),
    ("udp 64 B, guest -> wire", ["-u", "-l", "64", "-b", "0"], "kpkt/s"),
]


def throughput(host, seconds, port, args=()):
    """iperf3 from the guest to the wire (-R: back) for `seconds`: Gbit/s received (UDP: thousand datagrams
    received per second), and the whole machine's CPU % (all cores) meanwhile."""
    srv = subprocess.Popen(netns(host.wire, "iperf3", "-s", "-1", "-p", str(port)), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(0.4)
    b0, t0 = cpu_busy()
    out = subprocess.run(netns(host.guest, "iperf3", "-c", host.wire_ip, "-p", str(port), "-t", str(seconds), "-J",
                               *args), capture_output=True, text=True).stdout
    b1, t1 = cpu_busy()
    srv.wait()
    end = json.loads(out)["end"]
    if "-u" in args:
        s = end["sum"]
        value = (s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3
    else:
        value = end["sum_received"]["bits_per_second"] / 1e9
    cpus = os.cpu_count() or 1
    return value, 100.0 * cpus * (b1 - b0) / max(1, t1 - t0)


def normal_mode(a, tsec, rounds=3):
    """The splitter log on and off, and a plain veth pair (the host's own path), alternating, per case."""
    progress("normal mode: the splitter log on vs off, and a plain veth pair")
    on = VifHost(a.build, "on%d" % (os.getpid() % 10000), 20, log_on=True)
    off = VifHost(a.build, "of%d" % (os.getpid() % 10000), 21, log_on=False)
    veth = VethPeer("%d" % (os.getpid() % 10000), 22)
    res = {c[0]: {"on": [], "off": [], "veth": []} for c in CASES}
    port = 5400
    try:
        for r in range(rounds):
            for case, args, _ in CASES:
                for key, h in (("off", off), ("on", on), ("veth", veth)):
                    progress("normal mode: %s, %s, round %d/%d" % (case, key, r + 1, rounds))
                    res[case][key].append(throughput(h, tsec, port, args))
                    port += 1
    finally:
        on.close()
        off.close()
        veth.close()
    progress("")
    mean = statistics.mean
    print("\nNormal mode, iperf3 %d s x %d rounds per case, alternating; the peer is the host's own path (a plain "
          "veth pair); load average %s" % (tsec, rounds, " ".join(open("/proc/loadavg").read().split()[:3])))
    print("%-31s %-8s %9s %9s %9s %9s %9s   %13s %13s" % ("case", "unit", "log off", "log on", "veth", "on/off",
                                                           "on/veth", "CPU%/unit on", "CPU%/unit veth"))
    out = {}
    for case, _, unit in CASES:
        v = {k: mean(x[0] for x in res[case][k]) for k in ("off", "on", "veth")}
        c = {k: mean(x[1] for x in res[case][k]) for k in ("off", "on", "veth")}
        print("%-31s %-8s %9.3f %9.3f %9.3f %9.3f %9.3f   %13.1f %13.1f" % (
            case, unit, v["off"], v["on"], v["veth"], v["on"] / v["off"], v["on"] / v["veth"],
            c["on"] / v["on"], c["veth"] / v["veth"]))
        out[case] = {"unit": unit, "log_on": v["on"], "log_off": v["off"], "veth": v["veth"],
                     "cpu_percent": {"log_on": c["on"], "log_off": c["off"], "veth": c["veth"]},
                     "ratio_on_off": v["on"] / v["off"], "ratio_on_veth": v["on"] / v["veth"]}
    write_json(a, {"seconds": tsec, "rounds": rounds, "cases": out})


def soak(a, seconds):
    """--soak: iperf3 TCP guest -> wire at full speed, no fault, the machine loaded; counts the recoveries."""
    h = VifHost(a.build, "sk%d" % (os.getpid() % 10000), 30, zygote=True)
    srv = subprocess.Popen(netns(h.wire, "iperf3", "-s", "-1", "-p", "5390"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        cli, load = sdbench.soak(h, seconds, lambda: subprocess.Popen(
            netns(h.guest, "iperf3", "-c", h.wire_ip, "-p", "5390", "-t", str(seconds), "-J"),
            stdout=subprocess.PIPE, text=True))
        out, _ = cli.communicate()
        progress("")
        rec = h.recoveries()
        gbps = json.loads(out).get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e9 if out else 0
        print("soak: %d s of iperf3 TCP guest -> wire, no fault injected, %d busy loops; load average p50 %.2f" % (
            seconds, 2 * (os.cpu_count() or 1), statistics.median(load) if load else float("nan")))
        print("iperf3 rc %d, %.2f Gbit/s; recoveries (false positives) %d" % (cli.returncode, gbps, len(rec)))
        for e in rec:
            print("  " + e.get("cause", ""))
        write_json(a, {"soak": {"seconds": seconds, "rc": cli.returncode, "gbps": gbps, "loadavg_seen": load,
                                "false_positives": [e.get("cause", "") for e in rec]}})
    finally:
        srv.kill()
        srv.wait()
        h.close()


RESULT = {"class": "vif"}  # what --json writes: each part adds its figures


def write_json(a, part):
    RESULT.update(part)
    RESULT["loadavg"] = open("/proc/loadavg").read().split()[:3]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(RESULT, f, indent=1)


def compare_builds(a, tsec):
    """--compare: the normal-mode cases on this build and on another, one VifHost each (log on), alternating."""
    cases = [c for c in CASES if not a.case or a.case in c[0]]
    if not cases:
        raise SystemExit("no case matches --case %r" % a.case)
    port = [5800]

    def measure(h, name):
        port[0] += 1
        return throughput(h, tsec, port[0], next(c for c in cases if c[0] == name)[1])[0]

    compare([a.build, a.compare], [c[0] for c in cases],
            lambda build, i: VifHost(build, "c%d%d" % (i, os.getpid() % 1000), 50 + i), measure, a.rounds)


def retransmissions(a, seconds=20, kills=10, rounds=2):
    """TCP retransmissions over `seconds` of iperf3 with `kills` kills of the driver domain against the same
    without faults, on one shadowed vif (cold), alternating; a kill must cost no retransmission of its own."""
    progress("retransmissions: iperf3 %d s with %d kills vs without, %d rounds" % (seconds, kills, rounds))
    h = VifHost(a.build, "r%d" % (os.getpid() % 10000), 23, log_on=True)
    res = {0: [], kills: []}
    try:
        for r in range(rounds):
            for n in ((0, kills) if r % 2 == 0 else (kills, 0)):
                progress("retransmissions: round %d/%d, %d kills" % (r + 1, rounds, n))
                before = h.status().get("restarts", 0)
                run = iperf_across_kills(h, a.build, seconds=seconds, kills=n, port=5500 + 2 * r + (n > 0))
                h.base_restarts = h.status().get("restarts", 0)
                run["restarts"] = h.base_restarts - before
                res[n].append(run)
    finally:
        h.close()
    progress("")
    print("\nTCP retransmissions, iperf3 guest -> wire %d s per run, %d rounds alternating, shadow (cold); load "
          "average %s" % (seconds, rounds, " ".join(open("/proc/loadavg").read().split()[:3])))
    print("%-14s %6s %10s %9s %14s  %s" % ("faults", "exit", "Gbit/s", "restarts", "retransmits", "per round"))
    out = {}
    for n in (0, kills):
        v = res[n]
        retr = [x["retransmits"] or 0 for x in v]
        print("%-14s %6s %10.2f %9d %14d  %s" % ("%d kills" % n, ",".join(str(x["exit"]) for x in v),
                                                   statistics.mean(x["gbps"] for x in v),
                                                   sum(x["restarts"] for x in v), sum(retr),
                                                   " ".join(str(x) for x in retr)))
        out["%d_kills" % n] = {"exit": [x["exit"] for x in v], "gbps": [x["gbps"] for x in v], "retransmits": retr}
    base, faulted = sum(out["0_kills"]["retransmits"]), sum(out["%d_kills" % kills]["retransmits"])
    print("retransmissions with kills / without: %d / %d%s" % (
        faulted, base, "" if base == 0 else " = %.2f" % (faulted / base)))
    return out


def main():
    ap = arguments(__doc__)
    ap.add_argument("--kills", type=int, default=50, help="kills per shadow mode for the outage table (>= 50)")
    ap.add_argument("--quick", action="store_true", help="10 kills, short runs (smoke test of the bench)")
    ap.add_argument("--json", metavar="PATH",
                    help="also write the figures there, as JSON (outages per mode and fault, normal mode)")
    ap.add_argument("--normal-only", action="store_true", help="only the normal-mode table (throughput, no kills)")
    ap.add_argument("--recovery-only", action="store_true",
                    help="only the outage and phase tables (every mode, --kills kills each)")
    ap.add_argument("--retrans-only", action="store_true",
                    help="only the retransmission table (iperf3 20 s with 10 kills vs without)")
    ap.add_argument("--rounds", type=int, default=4, help="with --compare: rounds per case (default 4)")
    ap.add_argument("--soak", type=int, metavar="SECONDS", help="only the soak: iperf3 at full speed with no fault "
                    "while two busy loops per CPU load the machine; every recovery is a false positive")
    ap.add_argument("--faults", default="kill", metavar="LIST",
                    help="faults for the outage table, comma-separated: kill, segv, hang (default kill)")
    add_compare(ap)
    a = ap.parse_args()
    kills = 10 if a.quick else a.kills
    tsec = 3 if a.quick else 8
    require_root()
    if a.compare:
        header("vif")
        compare_builds(a, tsec)
        return
    if a.normal_only:
        header("vif")
        normal_mode(a, tsec)
        return
    if a.retrans_only:
        header("vif")
        retransmissions(a)
        return
    if a.soak:
        header("vif")
        soak(a, a.soak)
        return

    modes = [
        ("restart only", dict(log_on=False, standby=False)),
        ("shadow (cold)", dict(log_on=True, standby=False)),
        ("shadow+zygote", dict(log_on=True, zygote=True)),
        ("shadow+standby", dict(log_on=True, standby=True)),
    ]
    faults = [f for f in a.faults.split(",") if f]
    rows = []
    phase_rows = []
    figures = []
    traces = []
    header("vif")
    # No shadow: the driver domain is never restarted.
    progress("no shadow: iperf3 across one kill")
    h = VifHost(a.build, "n%d" % (os.getpid() % 100000), 10, budget=0)
    app = iperf_across_kills(h, a.build, seconds=tsec, kills=1, port=5310)
    h.close()
    rows.append(("no shadow", "kill", None, None, None, None, app, None))
    for i, (name, kw) in enumerate(modes):
        h = VifHost(a.build, "%d%d" % (i, os.getpid() % 10000), 11 + i, **kw)
        n = kills if "shadow" in name else max(10, kills // 2)
        for fault in faults:
            progress("%s: outages over %d x %s" % (name, n, fault))
            before = len(h.recoveries())
            outs, lost, sent, worst, seen = outages(h, a.build, n, fault=fault)
            recs = h.recoveries()[before:]
            h.base_restarts = h.status().get("restarts", 0)
            app = None
            if fault == "kill":
                progress("%s: iperf3 across 5 kills" % name)
                app = iperf_across_kills(h, a.build, seconds=tsec, kills=5, port=5320 + i)
                h.base_restarts = h.status().get("restarts", 0)
            rows.append((name, fault, outs, lost, sent, recs, app, worst))
            if fault == "kill" and "shadow" in name:
                traces.append((name, outs, trace(*seen, recs)))
            ph = {k: [r["phases_ms"][k] for r in recs if isinstance(r["phases_ms"].get(k), (int, float))]
                  for k in ("detect", "spawn", "replay", "resume", "total")}
            phase_rows.append((name, fault, ph))
            figures.append({"mode": name, "fault": fault, "outage_ms": outs, "lost": lost, "sent": sent,
                            "phases_ms": ph, "causes": [r.get("cause", "") for r in recs]})
        h.close()
    progress("")

    print("\nPer fault in the net driver domain: outage seen by a UDP stream (ms), and iperf3 TCP across 5 kills")
    print("outage: the longest the wire received nothing around the fault; worst: largest one-way delay of any")
    print("datagram sent between this fault and the next (p99 over faults); lost: datagrams never delivered")
    print("kill: kill -9 from outside; segv: an invalid access in the driver; hang: the whole domain stops")
    print("%-16s %-5s %6s %8s %8s %8s %8s %10s %6s   %-6s %7s %6s  %s" % (
        "mode", "fault", "n", "p50", "p95", "p99", "max", "worst p99", "lost", "iperf3", "Gbit/s", "retr", "error"))
    for name, fault, outs, lost, sent, recs, app, worst in rows:
        tail = "" if app is None else "   %-6s %7.2f %6s  %s" % (app["exit"], app["gbps"], app["retransmits"],
                                                                app["error"] or "-")
        if outs is None:
            print("%-16s %-5s %6s %8s %8s %8s %8s %10s %6s   %-6s %7.2f %6s  %s" % (
                name, fault, 1, "inf", "inf", "inf", "inf", "inf", "-", app["exit"], app["gbps"], app["retransmits"],
                app["error"] or "(stalled after the crash)"))
            continue
        print("%-16s %-5s %6d %8.2f %8.2f %8.2f %8.2f %10.2f %6d" % (
            name, fault, len(outs), pct(outs, 50), pct(outs, 95), pct(outs, 99), max(outs), pct(worst, 99), lost)
              + tail)

    print("\nRecovery phases from shadowd's events (ms, p50 / p99); detect: fault -> shadowd acts")
    print("%-16s %-5s %14s %14s %14s %14s %14s" % ("mode", "fault", "detect", "spawn", "replay", "resume", "total"))
    for name, fault, ph in phase_rows:
        print("%-16s %-5s " % (name, fault) + " ".join("%6.2f /%6.2f" % (pct(ph[k], 50), pct(ph[k], 99)) for k in
                                                       ("detect", "spawn", "replay", "resume", "total")))
    print("\nWhere a kill's outage goes (ms, p50 / p99): kill -> shadowd sees the death, shadowd's phases,")
    print("the last device serving -> the wire's next datagram; the outage beside")
    print("%-16s %14s %14s %14s %14s" % ("mode", "notice", "shadowd", "first frame", "outage"))
    for name, outs, t in traces:
        print("%-16s " % name + " ".join("%6.2f /%6.2f" % (pct(v, 50), pct(v, 99)) for v in (
            t["notice"], t["shadowd"], t["first frame"], outs)))
    write_json(a, {"recovery": figures, "kill_trace": {name: t for name, _, t in traces}})

    if a.recovery_only:
        return
    retransmissions(a, rounds=1 if a.quick else 2)
    normal_mode(a, tsec)


if __name__ == "__main__":
    main()
