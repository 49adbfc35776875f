#!/usr/bin/env python3
"""vif recovery benchmark (local platform). Prints tables; asserts nothing.

Side by side in one run, as in the seed's table:
  no shadow       restart budget 0: the driver domain is not restarted
  restart only    restarted, but no splitter log: in-flight requests are lost
  shadow (cold)   restarted + replay from the splitter log
  shadow+standby  a warm standby domain is promoted + replay

Per kill -9 of the net driver domain it measures the outage the application
sees: a UDP stream (2000 datagrams/s, guest -> wire) is timestamped on
arrival; the outage is from the kill to the arrival of the first datagram
sent after the kill (datagrams carry their send time). It also runs iperf3 TCP across kills, and
compares normal-mode throughput and CPU with the splitter log on and off.

Normal mode: iperf3 TCP 1 and 4 streams both ways and UDP 64-byte datagrams, through the vif with the
splitter log on and off and over a plain veth pair in the same run, with the ratios and CPU per unit.

usage: bench/vif_bench.py [--build DIR] [--kills N] [--quick] [--normal-only] [--json PATH]
Run as root, with nothing else heavy running.
"""
import json
import os
import statistics
import subprocess
import time

from sdbench import Host, arguments, header, pct, progress, require_root


class VifHost(Host):
    """A net driver domain and a guest whose vif reaches a wire namespace, on a subnet of its own."""

    def __init__(self, build, tag, subnet, standby=False, budget=1000, log_on=True):
        super().__init__(build, "vif", "bn%s" % tag, "bg%s" % tag, budget=budget, standby=standby)
        self.wire = "bw%s" % tag
        self.base_restarts = 0  # restarts before this measurement: outages() waits for each next one
        self.guest_ip, self.wire_ip = "10.250.%d.2" % subnet, "10.250.%d.1" % subnet
        self.start("vif = [ 'backend=%s,mac=00:16:3e:5d:%02x:02,ip=%s' ]" % (self.dom, subnet, self.guest_ip),
                   dd_memory=256, log_on=log_on, host_extra="wire_netns: %s\n" % self.wire)

        def up():
            st = self.status()
            return st.get("state") == "running" and (not standby or st.get("standby") == "ready")
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


def outages(host, build, kills, spacing=0.3, rate=2000):
    """Kills the driver `kills` times under a UDP stream; per kill the outage in ms."""
    probe = os.path.join(build, "bench", "udp_probe")
    # Each kill also waits for the restart and queries shadowctl: allow for it.
    dur = 2.0 + kills * (spacing + 0.3) + 1.0
    recv = subprocess.Popen(netns(host.wire, probe, "recv", "9999", str(dur + 1.5)), stdout=subprocess.PIPE, text=True)
    recv.stdout.readline()  # "ready"
    send = subprocess.Popen(netns(host.guest, probe, "send", host.wire_ip, "9999", str(rate), str(dur)))
    time.sleep(1.0)
    kill_times = []
    for i in range(kills):
        t = host.kill_driver()
        if t is not None:
            kill_times.append(t)
        host.wait_restarts(i + 1 + host.base_restarts)
        progress("  kill %d/%d" % (i + 1, kills))
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
    out, worst = [], []
    for k, tk in enumerate(kill_times):
        until = kill_times[k + 1] if k + 1 < len(kill_times) else tk + 500_000_000
        # Outage: from the kill until the first datagram sent after it arrives
        # (what was sent during the outage waits in the ring, then goes).
        after = [r for r in recs if tk <= r[0] < until]
        if after:
            out.append((after[0][1] - tk) / 1e6)
            worst.append(max(r[1] - r[0] for r in after) / 1e6)
    lost = sum(1 for s in range(sent) if s not in seqs)
    return out, lost, sent, worst


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


def cpu_busy():
    f = open("/proc/stat").readline().split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


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
    normal_mode(a, tsec)


if __name__ == "__main__":
    main()
