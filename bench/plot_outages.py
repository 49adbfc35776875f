#!/usr/bin/env python3
"""Plots the outage distribution per mode and fault from the benchmarks' --json files (gnuplot, PNG): one
panel per class, one cumulative curve per (mode, fault), outage on a log scale.

usage: bench/plot_outages.py [-o PNG] RESULT.json [RESULT.json ...]
Each file is a vif_bench.py, vbd_bench.py or vsnd_bench.py --json output (its "recovery" list); files
of one class are merged into one panel, so separate runs (say --zygote and --standby of vbd_bench) draw
together.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from sdbench import ROOT


COLOURS = {"restart only": "#999999", "shadow (cold)": "#1f5fbf", "shadow+zygote": "#e07b00",
           "shadow+standby": "#2a9d3a"}
DASHES = {"kill": 1, "segv": 2, "hang": 3}
FLOOR_MS = 0.1


def series(files):
    """{class: [(mode, fault, sorted outages)]}, in the order met."""
    out = {}
    for path in files:
        with open(path) as f:
            j = json.load(f)
        for r in j.get("recovery", []):
            # A fault nobody noticed (the vsnd's DAC played through it) is drawn at the axis' start.
            v = sorted(max(FLOOR_MS, x) for x in r.get("outage_ms", []) if isinstance(x, (int, float)))
            if v:
                out.setdefault(j.get("class", "?"), []).append((r["mode"], r["fault"], v))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "docs", "recovery_outages.png"))
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    if not shutil.which("gnuplot"):
        raise SystemExit("gnuplot not found (scripts/deps.sh installs gnuplot-nox)")
    by_class = series(a.files)
    if not by_class:
        raise SystemExit("no outages in %s" % " ".join(a.files))
    with tempfile.TemporaryDirectory() as tmp:
        gp = ['set terminal pngcairo size %d,520 font ",10"' % (620 * len(by_class)), 'set output "%s"' % a.output,
              "set multiplot layout 1,%d" % len(by_class), "set logscale x", "set grid",
              'set xlabel "outage (ms): how long the application\'s I/O stood still (vsnd: silence heard; '
              '0 drawn at %g)"' % FLOOR_MS, "set xrange [%g:*]" % FLOOR_MS,
              'set ylabel "fraction of faults"', "set yrange [0:1.02]", "set key bottom right font \",8\""]
        for cls, curves in by_class.items():
            plots = []
            for i, (mode, fault, v) in enumerate(curves):
                data = os.path.join(tmp, "%s%d.dat" % (cls, i))
                with open(data, "w") as f:
                    f.write("".join("%.4f %.5f\n" % (x, (k + 1) / len(v)) for k, x in enumerate(v)))
                # Colour: the mode; dashes: the fault.
                plots.append('"%s" using 1:2 with steps lw 2 lc rgb "%s" dt %d title "%s, %s (n=%d)"' % (
                    data, COLOURS.get(mode, "#000000"), DASHES.get(fault, 4), mode, fault, len(v)))
            gp += ['set title "%s"' % cls, "plot " + ", ".join(plots)]
        gp.append("unset multiplot")
        script = os.path.join(tmp, "plot.gp")
        with open(script, "w") as f:
            f.write("\n".join(gp) + "\n")
        r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
        if r.returncode != 0:
            print("gnuplot failed: " + r.stderr, file=sys.stderr)
            return 1
    print("outage plot: %s" % a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
