#!/usr/bin/env python3
"""Recovery vs devices on one driver domain (local platform). Prints a table and a plot; asserts nothing.

One driver domain serves N guests with one device each (vif: N guests whose
sd-netfront shadowd starts, each on the same wire; vbd: N guests whose disk
an sd-blkfront mounts). The driver domain is killed (kill -9) K times; per
kill shadowd's `recovery` event gives the phases: detect, spawn (death to a
Ready incarnation), and from Ready to the last device serving again
(replay + resume of every device, which run side by side), and the total.
Devices are connected and idle, so the figures are the cost of the devices
themselves, not of the requests in flight (vif_bench / vbd_bench measure
those).

usage: bench/devices_bench.py [--build DIR] [--kills K] [--vifs 1,4,16,64] [--disks 1,4,16] [--memory MiB] [--plot FILE]
Run as root, with nothing else heavy running.
"""
import os
import shutil
import subprocess
import time

from sdbench import ROOT, Host, arguments, header, pct, pmax, progress, require_root


class ManyHost(Host):
    """One driver domain of class `cls` with `n` guests, one device each."""

    def __init__(self, build, cls, n, tag, memory=None):
        super().__init__(build, cls, "m%s%s" % (cls[1:], tag), "mg%s" % tag)
        self.n, self.fronts = n, []
        names = ["%s%d" % (self.guest, i) for i in range(n)]
        if cls == "vif":
            self.wire = "mw%s" % tag
            lines = ["vif = [ 'backend=%s,mac=00:16:3e:6d:%02x:%02x,ip=10.233.%d.%d' ]"
                     % (self.dom, i >> 8, i & 0xff, i // 200, 2 + i % 200) for i in range(n)]
            self.start(list(zip(names, lines)), dd_memory=memory or 256, host_extra="wire_netns: %s\n" % self.wire)
        else:
            lines = []
            for i in range(n):
                img = os.path.join(self.dir, "d%d.img" % i)
                with open(img, "wb") as f:
                    f.truncate(64 << 20)
                lines.append("disk = [ 'backend=%s,vdev=xvda,target=%s' ]" % (self.dom, img))
            self.start(list(zip(names, lines)), dd_memory=memory or 128)
        self.wait(lambda: self.status().get("state") == "running", "shadowd did not come up", timeout=60)
        if cls == "vbd":
            for i, name in enumerate(names):
                mnt = os.path.join(self.dir, "mnt%d" % i)
                os.mkdir(mnt)
                self.fronts.append(subprocess.Popen(
                    [os.path.join(build, "frontends", "sd-blkfront"), "--socket",
                     os.path.join(self.state, "%s-vbd-0.sock" % name), "--mount", mnt],
                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "front%d.log" % i), "w")))

        def connected():
            devs = self.ctl("devices").get("devices", [])
            return len(devs) == n and all(d.get("detail", {}).get("frontend_connected") and
                                          d.get("detail", {}).get("backend_up") for d in devs)
        self.wait(connected, "the devices did not all connect", timeout=60)

    def close(self):
        for f in self.fronts:
            f.terminate()
        for f in self.fronts:
            try:
                f.wait(10)
            except subprocess.TimeoutExpired:
                f.kill()
        for i in range(len(self.fronts)):
            subprocess.run(["umount", "-l", os.path.join(self.dir, "mnt%d" % i)], stderr=subprocess.DEVNULL)
        super().close()


def footprint(pid):
    """The driver domain's address space (KiB) and open fds, as it serves its devices."""
    vm = [l.split()[1] for l in open("/proc/%d/status" % pid) if l.startswith("VmSize:")]
    return int(vm[0]), len(os.listdir("/proc/%d/fd" % pid))


def measure(build, cls, n, kills, tag, memory):
    """Kills the driver domain `kills` times; its footprint with the devices attached, and the recovery events."""
    h = ManyHost(build, cls, n, tag, memory)
    try:
        fp = footprint(h.status()["pid"])
        for k in range(kills):
            progress("  %s x%d: kill %d/%d" % (cls, n, k + 1, kills))
            before = len(h.recoveries())
            if h.kill_driver() is None:
                break
            h.wait_recoveries(before + 1, timeout=30)
            # Every device serves again before the next kill.
            h.wait(lambda: all(d.get("detail", {}).get("backend_up") for d in h.ctl("devices").get("devices", [])),
                   "devices did not come back", timeout=30)
            time.sleep(0.05)
        return fp, h.recoveries()
    finally:
        h.close()


def plot(rows, out_png):
    """Recovery total p50/p99 against devices per driver domain, one line per class (gnuplot, PNG)."""
    dat = out_png + ".dat"
    with open(dat, "w") as f:
        for cls in ("vif", "vbd"):
            f.write("# %s\n" % cls)
            for r in rows:
                if r["cls"] == cls:
                    f.write("%d %.3f %.3f\n" % (r["n"], r["p50"], r["p99"]))
            f.write("\n\n")
    gp = out_png + ".gp"
    open(gp, "w").write(
        'set terminal pngcairo size 800,450 font ",10"\nset output "%s"\n'
        'set title "Recovery of one driver-domain kill vs devices on it"\n'
        'set xlabel "devices on the driver domain"\nset ylabel "recovery total (ms)"\n'
        'set logscale x 2\nset key top left\nset grid\n'
        'plot "%s" index 0 using 1:2 with linespoints title "vif p50", '
        '"" index 0 using 1:3 with linespoints dt 2 title "vif p99", '
        '"" index 1 using 1:2 with linespoints title "vbd p50", '
        '"" index 1 using 1:3 with linespoints dt 2 title "vbd p99"\n' % (out_png, dat))
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    for f in (dat, gp):
        os.unlink(f)
    return r.returncode == 0


def main():
    ap = arguments(__doc__)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--vifs", default="1,4,16,64")
    ap.add_argument("--disks", default="1,4,16")
    ap.add_argument("--memory", type=int, help="the driver domain's memory= in MiB (default: vif 256, vbd 128)")
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "recovery_vs_devices.png"))
    args = ap.parse_args()
    require_root()
    header("devices")
    rows = []
    plan = [("vif", int(n)) for n in args.vifs.split(",") if n] + [("vbd", int(n)) for n in args.disks.split(",") if n]
    for i, (cls, n) in enumerate(plan):
        fp, recs = measure(args.build, cls, n, args.kills, "%d%d" % (os.getpid() % 1000, i), args.memory)
        ph = lambda k: [r["phases_ms"].get(k, 0) for r in recs]
        per_dev = [d.get("serving_ms", 0) for r in recs for d in r.get("devices", [])]
        rows.append({"cls": cls, "n": n, "kills": len(recs), "p50": pct(ph("total"), 50), "p99": pct(ph("total"), 99),
                     "max": pmax(ph("total")), "spawn": pct(ph("spawn"), 50), "devices": pct(ph("devices"), 50),
                     "dev_p50": pct(per_dev, 50), "vm_kib": fp[0], "fds": fp[1]})
    progress("")
    print("%-5s %8s %6s %10s %10s %10s %10s %14s %16s %10s %5s" % (
        "class", "devices", "kills", "total p50", "total p99", "total max", "spawn p50", "devices p50",
        "one device p50", "VmSize KiB", "fds"))
    for r in rows:
        print("%-5s %8d %6d %10.2f %10.2f %10.2f %10.2f %14.2f %16.2f %10d %5d" % (
            r["cls"], r["n"], r["kills"], r["p50"], r["p99"], r["max"], r["spawn"], r["devices"], r["dev_p50"],
            r["vm_kib"], r["fds"]))
    print("(ms; total = detect + spawn + devices; devices = Ready to the last device serving; "
          "one device = Ready to that device serving; VmSize, fds: the driver domain's, its devices attached)")
    by = {(r["cls"], r["n"]): r for r in rows}
    for cls in ("vif", "vbd"):
        ns = sorted(n for c, n in by if c == cls)
        if len(ns) > 1:
            a, b = by[(cls, ns[0])], by[(cls, ns[-1])]
            print("per %s (from %d to %d devices): %.0f KiB of address space, %.1f fds" % (
                cls, ns[0], ns[-1], (b["vm_kib"] - a["vm_kib"]) / (ns[-1] - ns[0]), (b["fds"] - a["fds"]) / (ns[-1] - ns[0])))
    if shutil.which("gnuplot") and plot(rows, args.plot):
        rel = os.path.relpath(args.plot, ROOT)
        print("plot: %s" % (args.plot if rel.startswith("..") else rel))


if __name__ == "__main__":
    main()
