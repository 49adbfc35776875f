#!/usr/bin/env python3
"""Boot the lab (Xen 4.17 + PV dom0) under qemu-system-x86_64 -accel tcg.

Every serial line is stamped with host wall time since QEMU started and kept
in --log; progress lines (SDLAB-MARK/RESULT, Xen and Linux banners, errors)
are echoed. SDLAB-KV lines from dom0-test.sh are decoded into --result (JSON)
together with the marks' host times, QEMU's exit and the wall time.

usage: qemu_run.py --xen XEN --kernel VMLINUZ --initrd DOM0_INITRD
                   [--log FILE] [--result FILE] [--timeout S] [--shell]
exit: 0 when dom0 reached 'SDLAB-MARK all_done' and QEMU powered off,
      1 otherwise (timeout, crash, incomplete test).
"""
import argparse
import base64
import json
import os
import re
import select
import subprocess
import sys
import time

# Xen: serial console on COM1; dom0 gets 1 GiB and both vCPUs.
XEN_CMDLINE = "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus={smp}"
DOM0_CMDLINE = "console=hvc0 earlyprintk=xen rdinit=/init quiet loglevel=4"
ECHO = re.compile(r"SDLAB-(MARK|RESULT|DOMU)|TIMEOUT|\(XEN\) Xen version|Linux version|"
                  r"[Pp]anic|Oops|crashed|\berror\b|FATAL|^\(exit|^\$ ")


def qemu_argv(a, test):
    dom0 = DOM0_CMDLINE + (" sdlab=test" if test else "")
    # -cpu Westmere: with QEMU 7.2's `max` model, processes in dom0 and the
    # domUs died at random (SIGSEGV, heap corruption, ld.so assertions, a
    # kernel image read back corrupt), 1-7 per run, whatever we turned off
    # (SMAP, which otherwise kills dom0 at once, AVX, PCID, SMP, MTTCG).
    # With the older Westmere model (no SMAP, AVX, PCID, XSAVE, FSGSBASE)
    # three whole runs had none (runs 20261127-091614, -093933, -095937);
    # domains boot somewhat slower.
    # See docs/XEN_LAB.md.
    return ["qemu-system-x86_64", "-accel", "tcg", "-cpu", a.cpu,
            "-m", str(a.mem), "-smp", str(a.smp), "-nographic", "-no-reboot", "-net", "none",
            "-kernel", a.xen, "-append", XEN_CMDLINE.format(smp=a.smp),
            "-initrd", f"{a.kernel} {dom0},{a.initrd}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--xen", required=True)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--log", default="/dev/null")
    ap.add_argument("--result", default=None)
    ap.add_argument("--timeout", type=float, default=1500)
    ap.add_argument("--mem", default=3072)
    ap.add_argument("--smp", default=2)
    ap.add_argument("--cpu", default="Westmere",
                    help="QEMU -cpu model (the default is what works, see qemu_argv)")
    ap.add_argument("--shell", action="store_true", help="interactive dom0 shell, no test")
    a = ap.parse_args()
    for f in (a.xen, a.kernel, a.initrd):
        if "," in f or " " in f:
            sys.exit(f"qemu_run.py: path {f!r} must not contain ',' or ' ' (QEMU -initrd syntax)")

    if a.shell:
        os.execvp("qemu-system-x86_64", qemu_argv(a, test=False))

    log = open(a.log, "w")
    t0 = time.time()
    p = subprocess.Popen(qemu_argv(a, test=True), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marks, kv, results = {}, {}, []
    state = "running"
    buf = b""
    fd = p.stdout.fileno()

    def line(s, t):
        log.write(f"[{t:8.2f}] {s}\n")
        log.flush()
        if ECHO.search(s):
            print(f"  [qemu +{t:7.2f}s] {s}", flush=True)
        m = re.match(r".*?SDLAB-MARK (\S+)", s)
        if m and m.group(1) not in marks:
            marks[m.group(1)] = round(t, 2)
        m = re.match(r".*?SDLAB-KV (\S+) ?(\S*)$", s)
        if m:
            try:
                kv[m.group(1)] = base64.b64decode(m.group(2), validate=True).decode("utf-8", "replace")
            except ValueError:
                kv[m.group(1) + "_garbled"] = m.group(2)
        if "SDLAB-RESULT" in s:
            results.append(s[s.index("SDLAB-RESULT") + 13:])

    # A dom0 test silent this long is stuck (or waiting very long): ask Xen,
    # through its serial console, where every vCPU is (debug keys q: domains,
    # r: run queues, d: registers and guest stacks). Ctrl-A three times
    # switches the console input to Xen and back; QEMU's -nographic mux
    # wants each Ctrl-A doubled.
    last_out, dumps = time.time(), 0

    def xen_dump():
        toggle = b"\x01\x01" * 3
        for keys in (toggle, b"q", b"r", b"d", toggle):
            p.stdin.write(keys)
            p.stdin.flush()
            time.sleep(2)

    while True:
        if time.time() - last_out > 240 and dumps < 2:
            dumps += 1
            last_out = time.time()
            print(f"  [qemu] no output for 240 s: asking Xen for a vCPU dump (debug keys q r d, in the log)",
                  flush=True)
            xen_dump()
        if time.time() - t0 > a.timeout:
            print(f"  [qemu] TIMEOUT after {a.timeout:.0f}s, killing qemu", flush=True)
            p.kill()
            state = "timeout"
            break
        r, _, _ = select.select([fd], [], [], 1.0)
        if not r:
            if p.poll() is not None:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        last_out = time.time()
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line(raw.decode("utf-8", "replace").rstrip("\r"), time.time() - t0)
    if buf:
        line(buf.decode("utf-8", "replace").rstrip("\r"), time.time() - t0)
    p.wait()
    wall = time.time() - t0
    done = "all_done" in marks
    if state == "running":
        state = "powered_off" if p.returncode == 0 else f"qemu_exit_{p.returncode}"
    print(f"  [qemu] {state}, wall {wall:.1f}s, dom0 test {'complete' if done else 'INCOMPLETE'}, log {a.log}",
          flush=True)
    if a.result:
        with open(a.result, "w") as f:
            json.dump({"state": state, "qemu_rc": p.returncode, "wall_s": round(wall, 2),
                       "test_complete": done, "marks": marks, "kv": kv, "results": results,
                       "log": a.log}, f, indent=1)
    return 0 if (done and state == "powered_off") else 1


if __name__ == "__main__":
    sys.exit(main())
