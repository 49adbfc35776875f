#!/usr/bin/env python3
"""vbd recovery benchmark (local platform). Prints tables; asserts nothing.

The guest's disk is sd-blkfront's FUSE file; the block driver domain serves it
from a sparse image on the host's file system (through the host's page cache,
or O_DIRECT with --direct-io-safe).

1. I/O stall per crash: fio keeps 16 random 4 KiB writes in flight (libaio,
   direct) while a probe writes 4 KiB blocks one at a time (O_DIRECT) and
   timestamps each; the block driver domain is killed (kill -9) N times. A
   crash's stall is the longest the probe waited for one write that was in
   flight at the kill or issued within 100 ms after it (what a program sees:
   how long its I/O stood still). shadowd's own phase timings are printed
   beside.
2. Normal mode: the splitter log on vs off, a FUSE file with nothing behind
   it (bench_null_fuse: FUSE's own cost), and the host's own path (the same
   fio on a plain loop device over an image file on the same file system),
   side by side in one run, alternating case by case so machine
   noise hits every side alike: 4 KiB randrw 70/30 at iodepth 16 and 32,
   4 KiB randwrite at iodepth 16, 1 MiB sequential write and read at
   iodepth 4. IOPS or MiB/s per side, the ratios, and CPU per unit.
3. Replay cost vs requests in flight: bench_vbd_replay (the frontend's
   requeue, 1..128), and the replay phase of the real recoveries of part 1
   by the number of requests they replayed.

usage: bench/vbd_bench.py [--build DIR] [--kills N] [--fault kill|segv|hang] [--rounds N] [--seconds S] [--quick]
       [--normal-only | --recovery-only | --soak SECONDS] [--direct-io-safe] [--standby | --zygote] [--json PATH]
       bench/vbd_bench.py [--build DIR] --compare OTHER_DIR [--case TEXT] [--rounds N] [--seconds S]
--compare runs the normal-mode cases on two build trees (say, of a commit and of the one before it), one
shadowed disk each, alternating round by round, and prints each side's rounds, medians and their ratio.
Run as root, with nothing else heavy running.
"""
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import sdbench
from sdbench import Host, add_compare, compare, cpu_busy, arguments, header, loadavg, pct, pmax, progress, require_root


class BlkHost(Host):
    """A block driver domain serving a sparse image, and a guest whose vbd sd-blkfront mounts (FUSE)."""

    DIRECT = False  # --direct-io-safe: the disk spec carries xl's flag (O_DIRECT)
    STANDBY = False  # --standby: the policy keeps a warm standby driver domain
    ZYGOTE = False   # --zygote: the policy keeps a spare driver domain with no devices

    def __init__(self, build, tag, log_on=True, disk_mib=512):
        super().__init__(build, "vbd", "bblk%s" % tag, "bbg%s" % tag, standby=BlkHost.STANDBY,
                         zygote=BlkHost.ZYGOTE)
        self.image = os.path.join(self.dir, "xvda.img")
        with open(self.image, "wb") as f:
            f.truncate(disk_mib << 20)
        self.start("disk = [ 'backend=%s,vdev=xvda,%starget=%s' ]"
                   % (self.dom, "direct-io-safe," if BlkHost.DIRECT else "", self.image), log_on=log_on)
        self.wait(lambda: self.detail().get("backend_up"), "shadowd did not come up")
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        self.front = subprocess.Popen([os.path.join(build, "frontends", "sd-blkfront"), "--socket",
                                       os.path.join(self.state, "%s-vbd-0.sock" % self.guest), "--mount", self.mnt],
                                      stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(self.dir, "front.log"), "w"))
        self.disk = os.path.join(self.mnt, "disk")
        self.wait(lambda: self.detail().get("frontend_connected") and os.path.exists(self.disk),
                  "sd-blkfront did not come up")
        self.log_on = bool(self.detail().get("splitter_log"))

    def fio(self, seconds, extra=(), background=False):
        argv = ["fio", "--name=b", "--filename=" + self.disk, "--ioengine=libaio", "--direct=1", "--bs=4k",
                "--rw=randwrite", "--iodepth=16", "--size=256M", "--fallocate=none", "--time_based",
                "--runtime=%d" % seconds, "--output-format=json"] + list(extra)
        # cwd: a fio stopped early leaves its verify state file there, not in the caller's directory.
        if background:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=self.dir)
        r = subprocess.run(argv, capture_output=True, text=True, cwd=self.dir)
        return json.loads(r.stdout)["jobs"][0] if r.returncode == 0 else None

    def close(self):
        """sd-blkfront first (it holds the mount), then shadowd; either may not have been started."""
        front = getattr(self, "front", None)
        if front:
            front.terminate()
            try:
                front.wait(10)
            except subprocess.TimeoutExpired:
                front.kill()
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        super().close()


PROBE = r"""
import mmap, os, random, signal, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
buf.write(b"\xa5" * 4096)
blocks = int(sys.argv[2]) // 4096
out = []
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
rnd = random.Random(7)
while not stop:
    off = rnd.randrange(blocks) * 4096
    t0 = time.monotonic()
    os.pwrite(fd, buf, off)
    out.append((t0, time.monotonic()))
with open(sys.argv[3], "w") as f:
    f.write("\n".join("%.6f %.6f" % x for x in out))
"""


class Probe:
    """4 KiB O_DIRECT writes one at a time, each timestamped (CLOCK_MONOTONIC),
    in a process of its own so that nothing the benchmark does delays it."""

    def __init__(self, path, span_bytes, out):
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, path, str(span_bytes), out])

    def finish(self):
        self.proc.terminate()
        self.proc.wait(10)
        return [tuple(map(float, line.split())) for line in open(self.out) if line.strip()]


FAULT_NAMES = {"kill": "kill -9", "segv": "SIGSEGV (an invalid access in the driver)",
               "hang": "hang (the whole domain stops)"}


def stall_per_crash(build, kills, fault="kill"):
    load0 = loadavg()
    progress("part 1: %d x %s of the block driver domain under fio load, probe timing each write" % (kills, fault))
    h = BlkHost(build, "s")
    try:
        load = h.fio(kills, background=True)  # outlives the kill loop; stopped below
        probe = Probe(h.disk, 256 << 20, os.path.join(h.dir, "probe.txt"))
        time.sleep(1.0)
        kill_at = []
        for k in range(kills):
            h.wait_recoveries(k)
            if BlkHost.STANDBY or BlkHost.ZYGOTE:  # each kill meets a ready spare
                h.wait(lambda: h.status().get("standby") == "ready", "the spare driver domain did not come back")
            time.sleep(0.15 + random.random() * 0.1)
            kill_at.append(time.monotonic())
            h.ctl("inject-fault", h.dom, fault)
        h.wait_recoveries(kills)
        time.sleep(0.5)
        samples = probe.finish()
        load.terminate()
        load.wait(10)
        recs = h.recoveries()
    finally:
        h.close()
    stalls = []
    for k in kill_at:
        hit = [e - s for s, e in samples if s <= k + 0.1 and e >= k]
        stalls.append(max(hit) * 1000 if hit else 0.0)
    quiet = [(e - s) * 1000 for s, e in samples if all(abs(s - k) > 0.5 for k in kill_at)]
    totals = [r["phases_ms"]["total"] for r in recs]
    progress("")
    print("\n1. I/O stall per fault: %d x %s of the block driver domain, fio randwrite 4k iodepth 16 running; "
          "disk %s%s" % (len(stalls), FAULT_NAMES.get(fault, fault),
                         "O_DIRECT (direct-io-safe)" if BlkHost.DIRECT else "through the host's page cache",
                         "; warm standby" if BlkHost.STANDBY else "; zygote" if BlkHost.ZYGOTE else ""))
    print("%-44s %8s %8s %8s %8s" % ("", "p50 ms", "p99 ms", "max ms", "n"))
    rows = [("probe write latency, no fault near", quiet), ("I/O stall per fault (probe, app's view)", stalls),
            ("shadowd recovery total (detect..resume)", totals)]
    rows += [("  phase " + ph, [r["phases_ms"][ph] for r in recs]) for ph in ("detect", "spawn", "replay", "resume")]
    for name, v in rows:
        print("%-44s %8.2f %8.2f %8.2f %8d" % (name, pct(v, 50), pct(v, 99), pmax(v), len(v)))
    print("stalls over 50 ms: %d of %d; the five longest: %s ms" % (
        sum(1 for x in stalls if x > 50), len(stalls), " ".join("%.1f" % x for x in sorted(stalls)[-5:])))
    print("load average before/after: %s / %s" % (load0, loadavg()))
    return recs, stalls


class LoopPeer:
    """The host's own path, for comparison in the same run: a plain loop device over a sparse image file on
    the same file system, no driver domain, no FUSE and no shadow (the same fio, the same O_DIRECT)."""

    log_on = "loop"

    def __init__(self, disk_mib=512):
        self.dir = tempfile.mkdtemp(prefix="sd-vbdpeer-")
        self.image = os.path.join(self.dir, "plain.img")
        with open(self.image, "wb") as f:
            f.truncate(disk_mib << 20)
        self.disk = subprocess.run(["losetup", "--find", "--show", "--direct-io=%s" % ("on" if BlkHost.DIRECT else "off"),
                                    self.image], check=True, capture_output=True, text=True).stdout.strip()

    fio = BlkHost.fio

    def close(self):
        subprocess.run(["losetup", "-d", self.disk], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


# Normal-mode cases: fio arguments over the defaults of BlkHost.fio, and the unit.
CASES = [
    ("4k randrw 70/30, iodepth 16", ["--rw=randrw", "--rwmixread=70", "--iodepth=16"], "IOPS"),
    ("4k randrw 70/30, iodepth 32", ["--rw=randrw", "--rwmixread=70", "--iodepth=32"], "IOPS"),
    ("4k randwrite, iodepth 16", [], "IOPS"),
    ("1M seq write, iodepth 4", ["--rw=write", "--bs=1M", "--iodepth=4"], "MiB/s"),
    ("1M seq read, iodepth 4", ["--rw=read", "--bs=1M", "--iodepth=4"], "MiB/s"),
]


def fio_value(j, unit):
    """IOPS (reads + writes) or MiB/s (reads + writes) of one fio job."""
    if unit == "IOPS":
        return j["read"]["iops"] + j["write"]["iops"]
    return (j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / (1 << 20)


class NullFusePeer:
    """FUSE's own cost: bench_null_fuse's file answers every request at once, with nothing behind it (no ring,
    no driver domain, no disk), mounted like sd-blkfront's; the same fio."""

    log_on = "fuse"

    def __init__(self, build):
        self.dir = tempfile.mkdtemp(prefix="sd-vbdnull-")
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        self.proc = subprocess.Popen([os.path.join(build, "bench", "bench_null_fuse"), self.mnt, "512"],
                                     stderr=subprocess.DEVNULL)
        self.disk = os.path.join(self.mnt, "disk")
        deadline = time.monotonic() + 10
        while not os.path.exists(self.disk):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("bench_null_fuse did not mount")
            time.sleep(0.05)

    fio = BlkHost.fio

    def close(self):
        subprocess.run(["umount", self.mnt], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def normal_mode(build, rounds, seconds):
    """The splitter log on and off, and a plain loop device (the host's own path), alternating, per case."""
    progress("normal mode: the splitter log on vs off, a FUSE file with nothing behind it, and a plain loop device")
    on, off, peer, null = BlkHost(build, "on", True), BlkHost(build, "off", False), LoopPeer(), NullFusePeer(build)
    sides = (("off", off), ("on", on), ("fuse", null), ("loop", peer))
    res = {c[0]: {k: [] for k, _ in sides} for c in CASES}
    try:
        if not on.log_on or off.log_on:
            raise SystemExit("the splitter log is not on/off as asked (SD_SPLITTER_LOG)")
        for _, h in sides:  # warm-up: allocate the images' blocks so every side starts alike
            h.fio(2, ["--rw=write", "--bs=1M", "--time_based=0", "--runtime=60", "--size=256M"])
        for r in range(rounds):
            for case, args, unit in CASES:
                for key, h in (sides if r % 2 == 0 else sides[::-1]):
                    progress("normal mode: %s, %s, round %d/%d" % (case, key, r + 1, rounds))
                    b0, t0 = cpu_busy()
                    j = h.fio(seconds, args)
                    b1, t1 = cpu_busy()
                    if j is None:
                        raise SystemExit("fio failed on %s (%s)" % (key, case))
                    res[case][key].append((fio_value(j, unit), 100.0 * (os.cpu_count() or 1) * (b1 - b0) /
                                           max(1, t1 - t0)))
    finally:
        on.close()
        off.close()
        peer.close()
        null.close()
    progress("")
    mean = statistics.mean
    print("\n2. Normal mode, fio (libaio, direct) %d s x %d rounds per case, alternating; the peer is the host's own"
          " path (a plain loop device over an image on the same file system); disk %s; load average %s" % (
              seconds, rounds, "O_DIRECT" if BlkHost.DIRECT else "through the host's page cache",
              " ".join(open("/proc/loadavg").read().split()[:3])))
    print("%-29s %-6s %9s %9s %9s %9s %8s %8s %9s   %10s %10s" % (
        "case", "unit", "log off", "log on", "null fuse", "loop", "on/off", "on/loop", "fuse/loop", "CPU%/k on",
        "CPU%/k loop"))
    out = {}
    for case, _, unit in CASES:
        v = {k: mean(x[0] for x in res[case][k]) for k, _ in sides}
        c = {k: mean(x[1] for x in res[case][k]) for k, _ in sides}
        print("%-29s %-6s %9.0f %9.0f %9.0f %9.0f %8.3f %8.3f %9.3f   %10.2f %10.2f" % (
            case, unit, v["off"], v["on"], v["fuse"], v["loop"], v["on"] / v["off"], v["on"] / v["loop"],
            v["fuse"] / v["loop"], 1000 * c["on"] / v["on"], 1000 * c["loop"] / v["loop"]))
        out[case] = {"unit": unit, "log_on": v["on"], "log_off": v["off"], "null_fuse": v["fuse"], "loop": v["loop"],
                     "cpu_percent": {k: c[k] for k, _ in sides}, "ratio_on_off": v["on"] / v["off"],
                     "ratio_on_loop": v["on"] / v["loop"], "ratio_null_fuse_loop": v["fuse"] / v["loop"]}
    print("null fuse: bench_null_fuse, a FUSE file answering every request at once with nothing behind it (FUSE's own"
          " cost); CPU%/k: the whole machine's CPU (all cores, %) per thousand units")
    return out


def compare_builds(a):
    """--compare: the normal-mode cases on this build and on another, one BlkHost each (log on), alternating."""
    cases = [c for c in CASES if not a.case or a.case in c[0]]
    if not cases:
        raise SystemExit("no case matches --case %r" % a.case)

    def open_host(build, i):
        h = BlkHost(build, "cmp%d" % i, True)
        h.fio(2, ["--rw=write", "--bs=1M", "--time_based=0", "--runtime=60", "--size=256M"])  # as normal mode
        return h

    def measure(h, name):
        case = next(c for c in cases if c[0] == name)
        j = h.fio(a.seconds, case[1])
        if j is None:
            raise SystemExit("fio failed (%s)" % name)
        return fio_value(j, case[2])

    compare([a.build, a.compare], [c[0] for c in cases], open_host, measure, a.rounds)


def replay_cost(build, recs):
    print("\n3. Replay cost vs requests in flight")
    out = subprocess.run([os.path.join(build, "bench", "bench_vbd_replay")], capture_output=True, text=True).stdout
    print(out.rstrip())
    if recs:
        by = {}
        for r in recs:
            by.setdefault(r.get("replayed", 0), []).append(r["phases_ms"]["replay"])
        print("real recoveries of part 1 (replay phase = kReconnect sent .. kReconnected received, ms):")
        print("%10s %8s %10s %10s" % ("replayed", "n", "median", "max"))
        for n in sorted(by):
            print("%10d %8d %10.3f %10.3f" % (n, len(by[n]), statistics.median(by[n]), max(by[n])))


def soak(a, seconds):
    """--soak: fio randrw 70/30 iodepth 16 with an fsync every 64 writes, no fault, the machine loaded; counts
    the recoveries (each a false positive of the hang checks)."""
    h = BlkHost(a.build, "k")
    try:
        f, load = sdbench.soak(h, seconds, lambda: h.fio(seconds, ["--rw=randrw", "--rwmixread=70", "--fsync=64"],
                                                            background=True))
        out, _ = f.communicate()
        progress("")
        rec = h.recoveries()
        job = json.loads(out)["jobs"][0] if f.returncode == 0 and out else {}
        print("soak: %d s of fio randrw 70/30 4k iodepth 16 fsync=64, no fault injected, %d busy loops; "
              "load average p50 %.2f" % (seconds, 2 * (os.cpu_count() or 1),
                                         statistics.median(load) if load else float("nan")))
        print("fio rc %d, error %s, read IOPS %.0f, write IOPS %.0f; recoveries (false positives) %d" % (
            f.returncode, job.get("error"), job.get("read", {}).get("iops", 0), job.get("write", {}).get("iops", 0),
            len(rec)))
        for e in rec:
            print("  " + e.get("cause", ""))
        return {"seconds": seconds, "rc": f.returncode, "loadavg_seen": load,
                "false_positives": [e.get("cause", "") for e in rec]}
    finally:
        h.close()


def main():
    ap = arguments(__doc__)
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10 kills, 1 round of 3 s (smoke test of the bench)")
    ap.add_argument("--normal-only", action="store_true", help="only the normal-mode table (no kills)")
    ap.add_argument("--recovery-only", action="store_true", help="only part 1 (the stall per fault)")
    ap.add_argument("--soak", type=int, metavar="SECONDS", help="only the soak: fio with no fault while two busy "
                    "loops per CPU load the machine; every recovery is a false positive")
    ap.add_argument("--direct-io-safe", action="store_true", help="O_DIRECT on the disk image (xl's flag)")
    ap.add_argument("--standby", action="store_true", help="policy standby: true (a warm standby driver domain)")
    ap.add_argument("--zygote", action="store_true", help="policy zygote: true (a spare driver domain, no devices)")
    ap.add_argument("--fault", default="kill", choices=("kill", "segv", "hang"),
                    help="the fault of part 1 (default kill)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures there, as JSON")
    add_compare(ap)
    a = ap.parse_args()
    if a.quick:
        a.kills, a.rounds, a.seconds = 10, 1, 3
    BlkHost.DIRECT = a.direct_io_safe
    BlkHost.STANDBY = a.standby
    BlkHost.ZYGOTE = a.zygote
    require_root("shadowd sandboxes its driver domains; sd-blkfront mounts FUSE")
    if shutil.which("fio") is None:
        raise SystemExit("fio not found (scripts/deps.sh)")
    if a.kills < 1 or a.rounds < 1 or a.seconds < 1:
        raise SystemExit("--kills, --rounds and --seconds must be >= 1")
    header("vbd")
    if a.compare:
        return compare_builds(a)
    if a.soak:
        r = soak(a, a.soak)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"class": "vbd", "soak": r}, f, indent=1)
        return
    recs, stalls = ([], []) if a.normal_only else stall_per_crash(a.build, a.kills, a.fault)
    mode = "shadow+standby" if a.standby else "shadow+zygote" if a.zygote else "shadow (cold)"
    recovery = [{"mode": mode, "fault": a.fault, "outage_ms": stalls,
                 "phases_ms": {k: [r["phases_ms"].get(k, 0.0) for r in recs]
                               for k in ("detect", "spawn", "replay", "resume", "total")},
                 "causes": [r.get("cause", "") for r in recs]}] if recs else []
    if a.recovery_only:
        normal = {}
    else:
        normal = normal_mode(a.build, a.rounds, a.seconds)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"class": "vbd", "rounds": a.rounds, "seconds": a.seconds,
                       "loadavg": open("/proc/loadavg").read().split()[:3], "cases": normal, "recovery": recovery},
                      f, indent=1)
    if not a.normal_only and not a.recovery_only:
        replay_cost(a.build, recs)


if __name__ == "__main__":
    main()
