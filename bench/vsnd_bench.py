#!/usr/bin/env python3
"""vsnd recovery benchmark (local platform). Prints tables; asserts nothing.

An unmodified aplay plays a marked 48 kHz S16_LE stereo WAV (every frame names
its own index: bench/pcm_marks_tool.cpp) through the ALSA plugin while the
sound driver domain is killed (kill -9) or hangs; the virtual DAC records what
it plays and the recording is compared with the input frame by frame. Per
fault it reports the gap (silence inserted) and the input skipped, measured
from the recording, sample-accurately. It also compares CPU (player with the
plugin, shadowd with the DAC, the driver domain) with the splitter log on and
off in the same run, and plots the output's envelope around one kill and one
hang (gnuplot, PNG).

usage: bench/vsnd_bench.py [--build DIR] [--kills N] [--hangs N] [--cpu-seconds S] [--cpu-rounds N]
                           [--plot FILE] [--zygote | --standby] [--json PATH]
       bench/vsnd_bench.py [--build DIR] --soak SECONDS
--soak plays that long with no fault while two busy loops per CPU load the machine, and counts what the
hang checks declared (each one a false positive) and the gaps heard.
Run as root, with nothing else heavy running.
"""
import array
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import sdbench
from sdbench import ROOT, Host, arguments, header, pct, pmax, progress, require_root

RATE = 48000


def cpu_s(pid):
    """utime + stime of a live process, seconds."""
    try:
        f = open("/proc/%d/stat" % pid).read()
    except OSError:
        return 0.0
    rest = f[f.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


class SndHost(Host):
    """A sound driver domain and a guest with a vsnd; aplay reaches it through the ALSA plugin."""

    ZYGOTE = False  # --zygote: the policy keeps a spare driver domain with no devices
    STANDBY = False  # --standby: the policy keeps a warm standby driver domain

    def __init__(self, build, tag, log_on=True):
        super().__init__(build, "vsnd", "bsnd%s" % tag, "bsg%s" % tag, zygote=SndHost.ZYGOTE,
                         standby=SndHost.STANDBY)
        self.start("vsnd = [[ 'card, backend=%s, short-name=c0', 'pcm, name=p0', 'stream, unique-id=s0, type=p' ]]"
                   % self.dom, log_on=log_on)
        self.pcm_sock = os.path.join(self.state, "%s-vsnd-0.sock" % self.guest)
        self.wav = os.path.join(self.state, "%s-vsnd-0.wav" % self.guest)
        rc = os.path.join(self.dir, "asoundrc")
        open(rc, "w").write('pcm_type.shadow { lib "%s" }\npcm.shadow { type shadow socket "%s" }\n'
                            % (os.path.join(build, "frontends", "libasound_module_pcm_shadow.so"), self.pcm_sock))
        self.alsa_env = dict(os.environ, ALSA_CONFIG_PATH="/usr/share/alsa/alsa.conf:" + rc)
        self.wait(lambda: self.detail().get("backend_up") and os.path.exists(self.pcm_sock),
                  "shadowd did not come up")

    def play(self, wav):
        return subprocess.Popen(["aplay", "-q", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", wav],
                                env=self.alsa_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_connected(self, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline and not self.detail().get("stream", {}).get("run") == "running":
            time.sleep(0.02)

    def fault(self, kind, n_before):
        """Injects once the previous recovery finished; returns the output frame it struck at."""
        self.wait_recoveries(n_before)
        at = self.detail().get("dac", {}).get("wav_frames", 0)
        if kind == "kill":
            self.kill_driver()
        else:
            self.ctl("inject-fault", self.dom, kind)
        return at


def marks(build, seconds, path):
    subprocess.run([os.path.join(build, "bench", "sd-pcm-marks"), "gen", str(seconds), path], check=True)


def gaps(build, wav, frames):
    r = subprocess.run([os.path.join(build, "bench", "sd-pcm-marks"), "gaps", wav, str(frames)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def per_fault(analysis, at_frames):
    """Silence and skipped input in the window [fault - 0.1 s, fault + 1 s)."""
    out = []
    for at in at_frames:
        sil = sum(g["silent"] for g in analysis["gaps"] if at - RATE // 10 <= g["at"] < at + RATE)
        skip = sum(g["skipped"] for g in analysis["gaps"] if at - RATE // 10 <= g["at"] < at + RATE)
        out.append((sil * 1000.0 / RATE, skip))
    return out


def fault_run(build, kind, n, spacing, tag):
    h = SndHost(build, tag)
    try:
        seconds = int(n * spacing + 4)
        wav = os.path.join(h.dir, "in.wav")
        marks(build, seconds, wav)
        p = h.play(wav)
        h.wait_connected()
        at = []
        for k in range(n):
            time.sleep(spacing)
            at.append(h.fault(kind, k))
            progress("  %s %d/%d" % (kind, k + 1, n))
        out, _ = p.communicate(timeout=seconds + 60)
        time.sleep(0.2)
        rec = h.recoveries()
        a = gaps(build, h.wav, seconds * RATE)
        return {"rc": p.returncode, "aplay": out.strip(), "faults": per_fault(a, at), "analysis": a,
                "recovery_ms": [e["phases_ms"]["total"] for e in rec], "causes": [e.get("cause", "") for e in rec]}
    finally:
        h.close()


def soak(build, seconds):
    """No fault injected, the machine loaded: every recovery is a false positive of the hang checks."""
    h = SndHost(build, "soak")
    try:
        wav = os.path.join(h.dir, "in.wav")
        marks(build, seconds, wav)

        def start():
            p = h.play(wav)
            h.wait_connected()
            return p
        p, load_seen = sdbench.soak(h, seconds + 10, start)  # ends with aplay
        out, _ = p.communicate()
        time.sleep(0.2)
        rec = h.recoveries()
        a = gaps(build, h.wav, seconds * RATE)
        return {"rc": p.returncode, "aplay": (out or "").strip(), "recoveries": [e.get("cause", "") for e in rec],
                "analysis": a, "load": load_seen}
    finally:
        h.close()


def cpu_run(build, log_on, seconds, tag):
    h = SndHost(build, tag, log_on=log_on)
    try:
        wav = os.path.join(h.dir, "in.wav")
        marks(build, seconds, wav)
        dd = h.status().get("pid", 0)
        s0, d0 = cpu_s(h.proc.pid), cpu_s(dd)
        p = h.play(wav)
        _, _, ru = os.wait4(p.pid, 0)
        p.returncode = 0
        s1, d1 = cpu_s(h.proc.pid), cpu_s(dd)
        a = gaps(build, h.wav, seconds * RATE)
        return {"aplay": ru.ru_utime + ru.ru_stime, "shadowd": s1 - s0, "drvdom": d1 - d0, "complete": a["complete"]}
    finally:
        h.close()


def envelope_plot(build, out_png):
    """Sine through the plugin; one kill, one hang; envelope (peak per 2 ms) around each."""
    h = SndHost(build, "p")
    try:
        wav = os.path.join(h.dir, "sine.wav")
        n = 9 * RATE
        data = array.array("h")
        for i in range(n):
            v = int(16000 * math.sin(2 * math.pi * 440 * i / RATE))
            data.extend((v, v))
        with open(wav, "wb") as f:
            import struct
            f.write(b"RIFF" + struct.pack("<I", 36 + n * 4) + b"WAVEfmt " +
                    struct.pack("<IHHIIHH", 16, 1, 2, RATE, RATE * 4, 4, 16) + b"data" + struct.pack("<I", n * 4))
            f.write(data.tobytes())
        p = h.play(wav)
        h.wait_connected()
        time.sleep(3)
        at_kill = h.fault("kill", 0)
        time.sleep(2.5)
        at_hang = h.fault("hang", 1)
        p.communicate(timeout=30)
        raw = open(h.wav, "rb").read()[44:]
        rec = array.array("h")
        rec.frombytes(raw[: len(raw) // 4 * 4])
        win = RATE // 500  # 2 ms
        dat = os.path.join(h.dir, "env.dat")
        with open(dat, "w") as f:
            for name, at in (("kill", at_kill), ("hang", at_hang)):
                f.write("# %s\n" % name)
                for start in range(max(0, at - RATE // 5), min(len(rec) // 2 - win, at + RATE * 3 // 10), win):
                    peak = max(abs(rec[2 * j]) for j in range(start, start + win))
                    f.write("%.1f %.4f\n" % ((start - at) * 1000.0 / RATE, peak / 32768.0))
                f.write("\n\n")
        gp = os.path.join(h.dir, "env.gp")
        open(gp, "w").write(
            'set terminal pngcairo size 900,500 font ",10"\nset output "%s"\n'
            'set multiplot layout 2,1 title "vsnd: DAC output envelope (peak per 2 ms) around a driver-domain fault"\n'
            'set xlabel "ms from the fault"\nset ylabel "peak (full scale)"\nset yrange [0:0.6]\nset grid\n'
            'plot "%s" index 0 with steps lw 2 title "kill -9 (cold restart, replay)"\n'
            'plot "%s" index 1 with steps lw 2 lc 7 title "hang (detected by heartbeat timeout 100 ms)"\n'
            'unset multiplot\n' % (out_png, dat, dat))
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        if r.returncode != 0:
            print("gnuplot failed: " + r.stderr, file=sys.stderr)
        return at_kill, at_hang
    finally:
        h.close()


def main():
    ap = arguments(__doc__)
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--hangs", type=int, default=5)
    ap.add_argument("--cpu-seconds", type=int, default=15)
    ap.add_argument("--cpu-rounds", type=int, default=4)
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "vsnd_crash_envelope.png"))
    ap.add_argument("--zygote", action="store_true", help="policy zygote: true (a spare driver domain, no devices)")
    ap.add_argument("--standby", action="store_true", help="policy standby: true (a warm standby driver domain)")
    ap.add_argument("--json", metavar="PATH", help="also write the gaps per fault there, as JSON")
    ap.add_argument("--soak", type=int, metavar="SECONDS", help="only the soak: no fault, the machine loaded")
    args = ap.parse_args()
    SndHost.ZYGOTE = args.zygote
    SndHost.STANDBY = args.standby
    if args.soak:
        require_root()
        header("vsnd")
        r = soak(args.build, args.soak)
        progress("")
        a = r["analysis"]
        print("soak: %d s of audio, no fault injected, %d busy loops; load average p50 %.2f" % (
            args.soak, 2 * os.cpu_count(), statistics.median(r["load"]) if r["load"] else float("nan")))
        print("aplay rc %d, recoveries (false positives) %d, gaps %d (longest %.2f ms), complete %s" % (
            r["rc"], len(r["recoveries"]), len(a.get("gaps", [])),
            max((g["silent"] for g in a.get("gaps", [])), default=0) * 1000.0 / RATE, a.get("complete")))
        for c in r["recoveries"]:
            print("  " + c)
        return
    require_root()
    header("vsnd")
    print("aplay --period-time=20000 --buffer-time=200000 (period 20 ms = 960 frames); DAC FIFO 3 periods%s\n"
          % ("; zygote" if args.zygote else "; warm standby" if args.standby else ""))

    progress("kills")
    kills = fault_run(args.build, "kill", args.kills, 1.5, "k")
    progress("hangs")
    hangs = fault_run(args.build, "hang", args.hangs, 2.0, "h")
    progress("")
    print("%-24s %4s %8s %10s %10s %10s %12s %14s %9s" % ("fault", "n", "aplay rc", "gap p50", "gap p99", "gap max",
                                                          "input lost", "recovery p50", "complete"))
    for name, r in (("kill -9", kills), ("hang", hangs)):
        g = [x[0] for x in r["faults"]]
        lost = sum(max(0, x[1]) for x in r["faults"])
        print("%-24s %4d %8d %7.2f ms %7.2f ms %7.2f ms %9d fr %11.2f ms %9s" % (
            name, len(g), r["rc"], pct(g, 50), pct(g, 99), pmax(g), lost,
            pct(r["recovery_ms"], 50), r["analysis"]["complete"]))
    print("\nper kill, gap ms: " + " ".join("%.2f" % x[0] for x in kills["faults"]))
    print("per hang, gap ms: " + " ".join("%.2f" % x[0] for x in hangs["faults"]))
    c = hangs["causes"]
    dry = sum("the DAC has" in x for x in c)
    beat = sum("heartbeat" in x for x in c)
    print("hangs found by: the DAC running dry %d, the heartbeat (100 ms) %d, other %d" % (dry, beat, len(c) - dry - beat))
    if kills["aplay"] or hangs["aplay"]:
        print("aplay said: %r %r" % (kills["aplay"], hangs["aplay"]))
    if args.json:
        mode = "shadow+zygote" if args.zygote else "shadow+standby" if args.standby else "shadow (cold)"
        with open(args.json, "w") as f:
            json.dump({"class": "vsnd", "loadavg": open("/proc/loadavg").read().split()[:3], "recovery": [
                {"mode": mode, "fault": fault, "outage_ms": [x[0] for x in r["faults"]], "aplay_rc": r["rc"],
                 "recovery_ms": r["recovery_ms"], "causes": r["causes"]}
                for fault, r in (("kill", kills), ("hang", hangs))]}, f, indent=1)

    progress("cpu")
    res = {"on": [], "off": []}
    for rnd in range(args.cpu_rounds):
        for mode in (("on", "off") if rnd % 2 == 0 else ("off", "on")):
            res[mode].append(cpu_run(args.build, mode == "on", args.cpu_seconds, "c%s%d" % (mode, rnd)))
    progress("")
    print("\nnormal mode, %d s of audio, %d runs each (alternating), splitter log on vs off (same run)"
          % (args.cpu_seconds, args.cpu_rounds))
    print("%-14s %12s %12s %12s %12s %10s %9s" % ("splitter log", "aplay+plugin", "shadowd+DAC", "drvdom",
                                                  "total", "CPU %", "complete"))
    tot = {}
    for mode in ("on", "off"):
        a = statistics.mean(x["aplay"] for x in res[mode]) * 1000
        s = statistics.mean(x["shadowd"] for x in res[mode]) * 1000
        d = statistics.mean(x["drvdom"] for x in res[mode]) * 1000
        tot[mode] = a + s + d
        print("%-14s %9.0f ms %9.0f ms %9.0f ms %9.0f ms %9.2f %9s" % (
            mode, a, s, d, a + s + d, 100.0 * (a + s + d) / 1000 / args.cpu_seconds,
            all(x["complete"] for x in res[mode])))
    print("CPU log on / off: %.3f" % (tot["on"] / tot["off"] if tot["off"] else float("nan")))

    if shutil.which("gnuplot"):
        progress("plot")
        envelope_plot(args.build, args.plot)
        progress("")
        print("\nenvelope plot: %s" % args.plot)
    else:
        print("\n(no gnuplot: plot skipped; scripts/deps.sh installs gnuplot-nox)")


if __name__ == "__main__":
    main()
