#!/usr/bin/env python3
"""Turn one lab run (run.sh's phases/notes + qemu_run.py's result.json) into the
one-line JSON report. Prints a short phase summary, then the JSON object as the
last line; also writes it to RUN_DIR/summary.json."""
import argparse
import json
import os
import statistics


def read_lines(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except OSError:
        return []


MIB = 1 << 20


def disk_app(kv, run):
    """The kernel-vbd guest's disk_app result (kv "<run>_app" = "exit=N stage=S mib=M bytes=B wsha=W rsha=R
    io_errors=E longest_ms=L start=T0 end=T1"), checked; None when the run recorded none."""
    v = kv.get(f"{run}_app")
    if v is None:
        return None
    f = dict(x.split("=", 1) for x in v.split() if "=" in x)
    if "exit" not in f:
        return {"exit": None, "error": v.strip(), "verify_ok": False, "sha_equal": None, "image_sha_equal": None,
                "io_errors": None, "mib": None, "longest_ms": None, "stage": None, "bytes": None}

    def integer(x):
        return int(x) if x is not None and x.isdigit() else None
    mib, size = integer(f.get("mib")), integer(f.get("bytes"))
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of nothing
    wsha, rsha = f.get("wsha", ""), f.get("rsha", "")
    sha_equal = bool(wsha) and wsha != empty and wsha == rsha
    image_sha = kv.get(f"{run}_image_sha", "").strip()
    longest = {}
    for item in f.get("longest_ms", "").split(","):
        label, _, ms = item.partition(":")
        if label and ms.isdigit():
            longest[label] = int(ms)
    app = {"exit": integer(f["exit"]), "stage": f.get("stage"), "mib": mib, "bytes": size, "sha_equal": sha_equal,
           "image_sha_equal": (image_sha == wsha) if image_sha and wsha and wsha != empty else None,
           "io_errors": integer(f.get("io_errors")), "longest_ms": longest or None}
    app["verify_ok"] = app["exit"] == 0 and sha_equal and mib is not None and size == mib * MIB
    return app


def vbd_note(kv, run, app):
    """One note on the kernel-vbd run's guest disk: its app, the ext4 check and where the faults hit."""
    if app is None:
        what = "no result recorded"
    elif "error" in app:
        what = app["error"]
    else:
        image = {True: "equal", False: "DIFFERENT", None: "not compared"}[app["image_sha_equal"]]
        what = (f"exit {app['exit']} (stage {app['stage']}), {app['bytes']} of {app['mib']} MiB, sha256 written vs "
                f"read back {'equal' if app['sha_equal'] else 'DIFFERENT'}, read from the image in dom0 {image}, "
                f"I/O errors in its kernel log: {app['io_errors']}, longest steps (ms): "
                f"{', '.join(f'{k} {v}' for k, v in (app['longest_ms'] or {}).items()) or '?'}, "
                f"{kv.get(f'{run}_app_s', '?')} s")
    at = "; ".join(f"{f} at {kv[f'{run}_{f}_at'].strip()}" for f in ("kill", "segv", "sysrq") if f"{run}_{f}_at" in kv)
    which = "kernel-vbd-standby" if run == "kvbdstandby" else "kernel-vbd"
    note = (f"guest4 disk app ({which} run): busybox writes a file of fsynced 1-MiB chunks of /dev/urandom to "
            f"the ext4 on its xvda (its kernel's xen-blkfront -> shadowd's vbd ring proxy in dom0 (sd-blkfront "
            f"--xen-guest) -> blkdd's drvdom -> blkdd's xvdb, an image file in dom0), syncs, drops its page cache "
            f"and reads the file back, across blkdd's faults ({at or 'progress at the faults not recorded'}): {what}; "
            f"e2fsck -n -f of the image afterwards: {kv.get(f'{run}_fsck', 'not run').strip()}")
    check = kv.get(f"{run}_check", "").strip()
    if check and not check.startswith("exit 0"):
        note += f"; shadowd --check of its host: {check}"
    return note


def snd_app(kv, run):
    """The kernel-vsnd guest's sound_app result (kv "<run>_app" = "exit=N bytes=B start=T0 end=T1 sound_errors=E
    card=C aplay_said=S") and the DAC's recording checked against the marked signal (kv "<run>_dac", the JSON
    of sd-pcm-marks gaps); None when the run recorded neither."""
    v, dac = kv.get(f"{run}_app"), kv.get(f"{run}_dac")
    if v is None and dac is None:
        return None
    f = dict(x.split("=", 1) for x in (v or "").split() if "=" in x)

    def integer(x):
        return int(x) if x is not None and x.isdigit() else None
    try:
        rec = json.loads(dac) if dac else None
    except ValueError:
        rec = None
    gaps = rec.get("gaps", []) if isinstance(rec, dict) else []
    app = {"exit": integer(f.get("exit")), "sound_errors": integer(f.get("sound_errors")), "card": f.get("card"),
           "aplay_said": f.get("aplay_said"), "error": None if "exit" in f else (v or "no result").strip(),
           "recording": rec if isinstance(rec, dict) else (dac or "").strip() or None,
           # silent runs inside the recording (the faults' pauses), ms at 48 kHz
           "pauses_ms": [round(g.get("silent", 0) / 48.0, 1) for g in gaps],
           # frames the recording jumps over, and frames it plays again (a gap that steps back)
           "lost_frames": sum(max(0, g.get("skipped", 0)) for g in gaps),
           "repeated_frames": [-g["skipped"] for g in gaps if g.get("skipped", 0) < 0],
           "underruns": (f.get("aplay_said") or "").count("underrun!!!")}
    app["complete"] = isinstance(rec, dict) and bool(rec.get("complete"))
    return app


# At an underrun of the guest's own (the player late: the lab's player is
# stopped 1.5 s in every run) ALSA stops the stream while the DAC still
# plays the WRITE that met the underrun; what it plays of it until the STOP
# arrives ALSA writes again after its prepare, as with a hardware DAC. The
# proxy learns the DAC's position once a period, so that is at most one
# period (aplay's: 6000 frames, 125 ms) per reported underrun; a repeat
# anywhere else, or longer, is a fault.
UNDERRUN_REPEAT_MAX = 6000


def snd_complete(sapp):
    """aplay exited 0 and the DAC played every frame of the WAV in order: none lost, none repeated but at the
    guest's own underruns."""
    return bool(sapp and sapp["exit"] == 0 and sapp["complete"] and sapp["lost_frames"] == 0
                and len(sapp["repeated_frames"]) <= sapp["underruns"]
                and all(r <= UNDERRUN_REPEAT_MAX for r in sapp["repeated_frames"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--failed-phase", default="")
    ap.add_argument("--restarts", default="3")
    ap.add_argument("--cache", default="")
    a = ap.parse_args()

    phases = []
    for l in read_lines(os.path.join(a.run_dir, "phases.txt")):
        name, _, secs = l.rpartition(" ")
        phases.append((name, float(secs)))
    notes = read_lines(os.path.join(a.run_dir, "notes.txt"))
    try:
        with open(os.path.join(a.run_dir, "result.json")) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {}
    kv, marks = res.get("kv", {}), res.get("marks", {})

    def num(key):
        try:
            return float(kv[key])
        except (KeyError, ValueError):
            return None

    # shadowd's recoveries on Xen: kv "<run>_<fault>" = "fault to ready|death to ready|restarts|cause|outage"
    # for run xen (cold), standby (warm standby), multi (two guests on one
    # netdd, cold), kernel and kstandby (an unmodified guest's vif) and kvbd
    # (an unmodified guest's disk on blkdd, cold), faults kill/segv/sysrq.
    runs = ("xen", "standby", "multi", "kernel", "kstandby", "kvbd", "kvbdstandby", "ksnd", "ksndstandby")
    vbd_runs = ("kvbd", "kvbdstandby")
    snd_runs = ("ksnd", "ksndstandby")
    vif_runs = tuple(r for r in runs if r not in vbd_runs + snd_runs)  # the runs whose guests download the blob
    first_guest = {"kernel": "guest3", "kstandby": "guest3", "kvbd": "guest4", "kvbdstandby": "guest4",
                   "ksnd": "guest5", "ksndstandby": "guest5"}  # else guest1
    # the driver domain the run's faults hit; netdd otherwise
    driver = {"kvbd": "blkdd", "kvbdstandby": "blkdd", "ksnd": "snddd", "ksndstandby": "snddd"}
    recoveries = {}  # (run, fault) -> dict
    for run in runs:
        for fault in ("kill", "segv", "sysrq"):
            v = kv.get(f"{run}_{fault}")
            if v is None:
                continue
            parts = v.split("|")
            if len(parts) not in (4, 5):
                recoveries[(run, fault)] = {"error": v.strip()}
                continue
            def ms(x):
                try:
                    return round(float(x.replace("ms", "").strip()), 1)
                except ValueError:
                    return None
            recoveries[(run, fault)] = {"fault_to_ready_ms": ms(parts[0]), "death_to_ready_ms": ms(parts[1]),
                                        "restarts": parts[2].strip(), "cause": parts[3].strip(),
                                        "vif_outage_ms": ms(parts[4]) if len(parts) == 5 and parts[4].strip() else None}

    def median_of(run):
        xs = [r["fault_to_ready_ms"] for (rn, _), r in recoveries.items()
              if rn == run and r.get("fault_to_ready_ms") is not None]
        return round(statistics.median(xs), 1) if xs else None
    # Each guest's download across the crashes: kv "<run>_app" (guest1) or
    # "<run>_app_<guest>" = "exit=N md5=M bytes=B ...".
    blob = kv.get("blob", "").split()  # "<bytes> bytes md5 <md5>"
    apps = {}  # (run, guest) -> dict
    for run in vif_runs:
        for key in sorted(k for k in kv if k == f"{run}_app" or k.startswith(f"{run}_app_") and not k.endswith("_s")):
            fields = dict(f.split("=", 1) for f in kv[key].split() if "=" in f)
            if "exit" not in fields:
                continue
            md5_ok = len(blob) == 4 and fields.get("md5") == blob[3]
            size = fields.get("bytes") or None  # older guest images did not count them
            ok = md5_ok and (size is None or size == blob[0])
            guest = first_guest.get(run, "guest1") if key == f"{run}_app" else key[len(f"{run}_app_"):]
            kerr = fields.get("kernel_net_errors")
            apps[(run, guest)] = {"exit": int(fields["exit"]) if fields["exit"].isdigit() else None,
                                  "bytes_ok": ok, "md5_ok": md5_ok, "bytes": size, "seconds": kv.get(f"{key}_s"),
                                  "kernel_net_errors": int(kerr) if kerr and kerr.isdigit() else None}
    first_app = apps.get(("xen", "guest1")) or apps.get(("standby", "guest1"))
    shadow_cold_ms = median_of("xen")
    standby_ms = median_of("standby")
    samples = [float(x) for x in kv.get("baseline_samples_s", "").split()]
    baseline = round(statistics.median(samples), 2) if samples else None
    xen_platform = kv.get("xen_out")
    xen_platform = xen_platform.strip() if xen_platform is not None else None
    boot_s = marks.get("xl_ready")

    out_notes = []
    if a.failed_phase:
        out_notes.append(f"FAILED in phase '{a.failed_phase}'" +
                         (f" (qemu: {res.get('state')}, dom0 test complete: {res.get('test_complete')})"
                          if res else ""))
    if "fatal" in kv:
        out_notes.append("dom0 test: " + kv["fatal"])
    if kv.get("xen_version"):
        out_notes.append(f"Xen {kv['xen_version']} under QEMU TCG ({os.environ.get('LAB_SMP') or 2} vCPUs, 3 GiB, no KVM), "
                         f"Debian {kv.get('dom0_kernel', '?')} as PV dom0 (1 GiB) and PV domUs")
    if boot_s is not None:
        out_notes.append(f"boot_s = QEMU start -> first successful `xl info` in dom0 "
                         f"(dom0 /init at {marks.get('dom0_init', '?')} s)")
    if samples:
        out_notes.append(
            f"baseline_s = median of {len(samples)} x (`xl destroy netdd` + `xl create netdd` until the new "
            f"domain's init wrote data/ready, seen by a xenstore watch): "
            f"{' / '.join(f'{s:.2f}' for s in samples)} s; first cold create {kv.get('dd_cold_create_s', '?')} s; "
            f"netdd = PV driver_domain=1, 128 MiB, busybox initramfs loading xen-netback")
    elif res:
        out_notes.append(f"baseline not measured (asked for {a.restarts} restarts)")
    if res:
        out_notes.append("baseline = what an operator does by hand: `xl destroy` + `xl create` of netdd (with its "
                         "NIC, a vif on dom0's bridge xenbr0 plugged by xl's hotplug) until its init is up; it does "
                         "not count re-plugging the guest's vif, which stock Xen cannot do (the frontend stays "
                         "Connected to the dead backend, nothing re-attaches it); guest1 runs without devices "
                         f"there (state at the end '{kv.get('guest_state_end', '?')}')")
    if "crash_detect_ms" in kv:
        out_notes.append(f"crashes: `xl sysrq netdd c` -> dom0 saw @releaseDomain and state "
                         f"'{kv.get('crash_state', '?')}' {kv['crash_detect_ms']} ms after `xl sysrq` started "
                         f"({kv.get('crash_sysrq_ms', '?')} ms of it in `xl sysrq` itself); manual recovery "
                         f"(destroy + create until ready) {kv.get('crash_recover_s', '?')} s")
    elif res:
        out_notes.append("crashes: the sysrq crash of netdd was not observed")
    if "stock_vif" in kv:
        out_notes.append("stock baseline, unmodified guest3 with its vif on netdd's kernel netback (xl create "
                         "vif = ['backend=netdd,...']), then xl destroy + xl create netdd "
                         f"({kv.get('stock_vif_recreate_s', '?')} s): {kv['stock_vif'].strip()}")
    if "xen_check_out" in kv:
        out_notes.append(f"`shadowd --platform xen --check` (exit {kv.get('xen_check_rc')}): "
                         f"{kv['xen_check_out'].strip()}")
    if "stock_vbd" in kv:
        out_notes.append("stock baseline, unmodified guest4 with its disk on blkdd's kernel blkback (xl create "
                         "disk = ['backend=blkdd,...'], dom0 doing blkdd's hotplug step), then xl destroy + xl create "
                         f"blkdd ({kv.get('stock_vbd_recreate_s', '?')} s): {kv['stock_vbd'].strip()}")
    what_run = {"xen": "cold (standby off)", "standby": "warm standby", "multi": "two guests' vifs on one netdd, cold",
                "kernel": "unmodified guest (kernel xen-netfront, dom0 ring proxy), cold",
                "kstandby": "unmodified guest (kernel xen-netfront, dom0 ring proxy), warm standby",
                "kvbd": "unmodified guest's disk (kernel xen-blkfront, ext4, dom0 vbd ring proxy) on blkdd, cold",
                "kvbdstandby": "unmodified guest's disk (kernel xen-blkfront, ext4, dom0 vbd ring proxy) on blkdd, "
                               "warm standby",
                "ksnd": "unmodified guest's sound card (kernel snd-xen-front, aplay, dom0 sound ring proxy) on snddd, "
                        "cold",
                "ksndstandby": "unmodified guest's sound card (kernel snd-xen-front, aplay, dom0 sound ring proxy) on "
                               "snddd, warm standby"}
    for run, what in what_run.items():
        if f"{run}_out" not in kv:
            continue
        rc = kv.get(f"{run}_rc", "?")
        how = f"exit {rc}"
        if rc.isdigit() and int(rc) > 128:
            sig = {6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}.get(int(rc) - 128, "")
            how = f"DIED of signal {int(rc) - 128} {sig} (exit {rc})"
        dd = driver.get(run, "netdd")
        line = (f"shadowd --platform xen, {what}: control socket after {kv.get(f'{run}_up_s', '?')} s, {dd} "
                f"first Ready {kv.get(f'{run}_first_ready_s', '?')} s after start; ")
        for fault in ("kill", "segv", "sysrq"):
            r = recoveries.get((run, fault))
            if r is None:
                continue
            if "error" in r:
                line += f"{fault}: {r['error']}; "
            else:
                line += (f"{fault}: fault->ready {r['fault_to_ready_ms']} ms, death->ready {r['death_to_ready_ms']} ms, "
                         f"guest {'disk' if run in vbd_runs else 'card' if run in snd_runs else 'vif'} outage "
                         f"{r.get('vif_outage_ms')} ms "
                         f"(cause: {r['cause']}); ")
        line += (f"ended {kv.get(f'{run}_s', '?')} s after start: {how}; domains left: "
                 f"{kv.get(f'{run}_domains_left', '').strip() or 'none'}")
        out_notes.append(line)
        if kv.get(f"{run}_error"):
            out_notes.append(f"shadowd ({run}): {kv[f'{run}_error']}")
    if shadow_cold_ms is not None:
        out_notes.append("shadow_cold_ms / standby_ms = median of shadowd's 'fault to ready' (shadowctl status netdd: "
                         "first sign of the fault -> the new driver domain's drvdom said Ready over its vchan) "
                         "over the kill, segv (drvdom crash inside the domain) and sysrq (kernel crash) faults")
    for (run, guest), app in apps.items():
        path = ("its kernel's xen-netfront -> shadowd's ring proxy in dom0 (sd-netfront --xen-guest)"
                if run in ("kernel", "kstandby") else "sd-netfront --xen")
        out_notes.append(f"{guest} app ({what_run[run]} run): busybox wget of a "
                         f"{blob[0] if blob else '?'}-byte blob from dom0 over {guest}'s shadowed vif ({path} "
                         f"-> netdd's drvdom -> netdd's NIC -> dom0 bridge) across the run's driver-domain "
                         f"faults: exit {app['exit']}, {app['bytes'] or 'uncounted'} bytes, md5 "
                         f"{'matches' if app['md5_ok'] else 'DIFFERS'}, {app['seconds']} s" +
                         (f", netfront errors in its kernel log: {app['kernel_net_errors']}"
                          if app.get("kernel_net_errors") is not None else ""))
    for run in runs:
        for key in sorted(k for k in kv if k == f"{run}_xenbus" or k.startswith(f"{run}_xenbus_")):
            seen = kv[key].split()
            states = sorted({s.split("/")[0] for s in seen})
            guest = key[len(f"{run}_xenbus_"):] if key != f"{run}_xenbus" else first_guest.get(run, "guest1")
            until = "the end of the guest's app" if run in vbd_runs + snd_runs else "the end of the faults"
            out_notes.append(f"{run}: {guest}'s device in xenstore (state/backend-id after every change, from "
                             f"the first attach to {until}): {' '.join(seen)}; "
                             f"{'stayed Connected (4)' if states == ['4'] else 'states seen: ' + ', '.join(states)}")
        for k in sorted(k for k in kv if k in (f"{run}_vif", f"{run}_vbd", f"{run}_vsnd", f"{run}_app")
                        or k.startswith(f"{run}_ping")):
            if k == f"{run}_app" and run not in vif_runs:
                continue  # the disk and sound apps have their own notes below
            if k.startswith(f"{run}_ping") or not any(r == run for r, _ in apps):
                out_notes.append(f"{k}: {kv[k].strip()}")
    for run in vbd_runs:
        vbd_app = disk_app(kv, run)
        if vbd_app is not None or f"{run}_out" in kv:
            out_notes.append(vbd_note(kv, run, vbd_app))
    for run in snd_runs:
        sapp = snd_app(kv, run)
        if sapp is None:
            continue
        at = "; ".join(f"{f} {kv[f'{run}_{f}_at'].strip()}" for f in ("kill", "segv", "sysrq") if f"{run}_{f}_at" in kv)
        out_notes.append(
            f"guest5 sound app ({what_run[run]} run): Debian's aplay plays a {kv.get(f'{run}_seconds', '?')}-s marked "
            f"WAV on its card (its kernel's snd-xen-front -> shadowd's sound ring proxy in dom0 (sd-sndfront "
            f"--xen-guest) -> snddd's drvdom -> the DAC shadowd lends snddd, recording in dom0) across snddd's "
            f"faults ({at or 'not recorded'}): " +
            (sapp["error"] if sapp["error"] else
             f"exit {sapp['exit']}, sound errors in its kernel log: {sapp['sound_errors']}, card {sapp['card']}"
             f"{'' if sapp['exit'] == 0 else ', aplay said ' + str(sapp['aplay_said'])}, {kv.get(f'{run}_app_s', '?')} s") +
            f"; the DAC's recording: {json.dumps(sapp['recording'])} (complete: {sapp['complete']}, pauses "
            f"{sapp['pauses_ms']} ms)")
    if not apps:
        out_notes.append("app_exit, bytes_ok stay null: no guest application result was recorded")
    fails = kv.get("xl_create_failures", "0").split(" ", 1)
    if fails[0] not in ("", "0"):
        out_notes.append(f"`xl create` failed {fails[0]} time(s) and was retried (the timed sample is the "
                         f"successful attempt): {fails[1].strip() if len(fails) > 1 else ''}")
    if "local_result" in kv:
        out_notes.append("shadowd --platform local inside dom0: " + kv["local_result"].strip())
    out_notes += notes
    if phases:
        out_notes.append("phases: " + ", ".join(f"{n} {s:.1f}s" for n, s in phases))
    # dom0 processes that died under the test (seen under TCG right after domU
    # crashes: `date`, `grep`, once shadowd): counted, never hidden.
    crashed = [l.split("] ", 1)[-1].strip() for l in read_lines(os.path.join(a.run_dir, "boot.log"))
               if l.rstrip().endswith(("Segmentation fault", "Aborted", "program error"))]
    if crashed:
        out_notes.append(f"dom0 processes that died during the run ({len(crashed)}): " + "; ".join(crashed[:5]))
    garbled = [k for k in kv if k.endswith("_garbled")]
    if garbled:
        out_notes.append("garbled serial lines for: " + ", ".join(garbled))

    # Per class, the unmodified guest (kernel runs, cold and warm standby):
    # what its application saw, whether its device stayed Connected, the
    # guest vif's outage and shadowd's fault-to-ready per fault.
    unmodified = {}

    def device(run):
        """What every class reports of its run: the guest's device in xenstore, the project's binaries in the
        guest's image, and per fault the device's outage and shadowd's fault-to-ready."""
        xb = kv.get(f"{run}_xenbus", "").split()
        ours = [(f, r) for (rn, f), r in recoveries.items() if rn == run]
        return {"xenbus_stayed_connected": bool(xb) and {x.split("/")[0] for x in xb} == {"4"},
                "project_binaries_in_guest": kv.get(f"{run}_project_binaries"),
                "outage_ms": {f: r.get("vif_outage_ms") for f, r in ours},
                "fault_to_ready_ms": {f: r.get("fault_to_ready_ms") for f, r in ours}}

    def fault_at(run):  # where the guest's app was at each fault
        return {f: kv[f"{run}_{f}_at"].strip() for f in ("kill", "segv", "sysrq") if f"{run}_{f}_at" in kv}

    def recovered(run):
        return any(r == run for r, _ in recoveries)
    for run, mode in (("kernel", "cold"), ("kstandby", "standby")):
        kapp = apps.get((run, "guest3"))
        if not kapp and not recovered(run):
            continue
        unmodified.setdefault("vif", {})[mode] = {
            "app_exit": kapp["exit"] if kapp else None,
            "bytes_ok": kapp["bytes_ok"] if kapp else None,
            "kernel_net_errors": kapp.get("kernel_net_errors") if kapp else None,
            **device(run),
        }
    if "stock_vif" in kv:  # the stock baseline of the same guest's device, for comparison
        unmodified.setdefault("vif", {})["stock_baseline"] = kv["stock_vif"].strip()
    # The unmodified guest's disk (kvbd: cold): its write + sync + readback
    # across the faults, the ext4 checked from dom0 afterwards.
    for run, mode in (("kvbd", "cold"), ("kvbdstandby", "standby")):
        dapp = disk_app(kv, run)
        if dapp is None and not recovered(run):
            continue
        fsck = kv.get(f"{run}_fsck")
        unmodified.setdefault("vbd", {})[mode] = {
            "app_exit": dapp["exit"] if dapp else None,
            "verify_ok": dapp["verify_ok"] if dapp else None,
            "sha_equal": dapp["sha_equal"] if dapp else None,
            "image_sha_equal": dapp["image_sha_equal"] if dapp else None,
            "fsck_clean": (fsck.split()[:1] == ["rc=0"]) if fsck is not None else None,
            "io_errors": dapp["io_errors"] if dapp else None,
            "mib": dapp["mib"] if dapp else None,
            "seconds": kv.get(f"{run}_app_s"),
            "fault_at_progress": fault_at(run),
            "guest_longest_steps_ms": dapp["longest_ms"] if dapp else None,
            **device(run),
        }
        m = unmodified["vbd"][mode]
        m["transparent"] = (m["app_exit"] == 0 and bool(m["verify_ok"]) and m["image_sha_equal"] is not False and
                            bool(m["fsck_clean"]) and m["io_errors"] == 0 and m["xenbus_stayed_connected"] and
                            len(m["fault_to_ready_ms"]) == 3 and None not in m["fault_to_ready_ms"].values())
    if "stock_vbd" in kv:
        unmodified.setdefault("vbd", {})["stock_baseline"] = kv["stock_vbd"].strip()
    # The unmodified guest's sound card: aplay's exit, the DAC's recording
    # complete (every frame of the marked WAV, in order, the faults heard as
    # pauses), the card in xenstore.
    for run, mode in (("ksnd", "cold"), ("ksndstandby", "standby")):
        sapp = snd_app(kv, run)
        if sapp is None and not recovered(run):
            continue
        m = unmodified.setdefault("vsnd", {})[mode] = {
            "app_exit": sapp["exit"] if sapp else None,
            "complete_ok": snd_complete(sapp),
            "recording_complete": sapp["complete"] if sapp else None,
            "pauses_ms": sapp["pauses_ms"] if sapp else None,
            "lost_frames": sapp["lost_frames"] if sapp else None,
            "repeated_frames": sapp["repeated_frames"] if sapp else None,
            "guest_underruns": sapp["underruns"] if sapp else None,
            "sound_errors": sapp["sound_errors"] if sapp else None,
            "seconds": kv.get(f"{run}_app_s"),
            "fault_at": fault_at(run),
            **device(run),
        }
        m["transparent"] = (m["complete_ok"] and m["xenbus_stayed_connected"] and len(m["fault_to_ready_ms"]) >= 2
                            and None not in m["fault_to_ready_ms"].values())
    if "vsnd" in unmodified:
        unmodified["vsnd"]["stock_baseline"] = ("none: Xen ships no sound backend for snd-xen-front (no stock "
                                                "driver domain to destroy and re-create)")
    for name, cls in unmodified.items():  # per class: app_exit and bytes_ok (vif) / verify_ok (vbd) over its runs
        modes = [m for m in cls.values() if isinstance(m, dict)]
        exits = [m["app_exit"] for m in modes]
        cls["app_exit"] = None if not exits or None in exits else max(exits)
        ok_key = {"vbd": "verify_ok", "vsnd": "complete_ok"}.get(name, "bytes_ok")
        cls[ok_key] = bool(modes) and all(m[ok_key] for m in modes)
    unmodified = unmodified or None

    report = {
        # driver-domain failures the lab caused and saw recovered: the manual
        # sysrq crash + every fault shadowd recovered
        "crashes": int(num("crashes") or 0) + sum(1 for r in recoveries.values() if "error" not in r),
        "app_exit": first_app["exit"] if first_app else None,
        "bytes_ok": first_app["bytes_ok"] if first_app else None,
        "baseline_s": baseline,
        "shadow_cold_ms": shadow_cold_ms,
        "standby_ms": standby_ms,
        "xen_platform": xen_platform,
        "boot_s": boot_s,
        "unmodified": unmodified,
        "notes": out_notes,
    }
    line = json.dumps(report)
    try:
        with open(os.path.join(a.run_dir, "summary.json"), "w") as f:
            f.write(line + "\n")
    except OSError:
        pass
    print("[xen-lab] " + " | ".join(f"{n} {s:.1f}s" for n, s in phases))
    print(line)


if __name__ == "__main__":
    main()
