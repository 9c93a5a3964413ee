#!/usr/bin/env python3
"""Answer latency while zones reload, authdns beside NSD in one run.

    python bench/reload_latency.py [--workers 2] [--rate 2000] [--seconds 6] [--every 0.5]
                                   [--hosts 1000] [--server-cpus 0] [--client-cpus 1]

For each server (NSD with server-count --workers, then authdns with --workers): a zone
of --hosts A records plus an MX pool; a client asking at a fixed --rate (UDP, 16 source
ports, so both workers get queries; each query timed from its send to its answer) for
--seconds without reloads, then --seconds while the zone file is rewritten with a new
serial and the server sent SIGHUP every --every seconds (NSD 4 reloads changed zone
files on SIGHUP; authdns reloads on it, `--no-watch` so only the signal does). Prints
p50, p99, max latency and lost queries per phase, p99 with reloads over p99 without
(the target: at most 2), and the same for NSD. Servers pinned to --server-cpus, the
client to --client-cpus (taskset); on a shared machine the figures are noisy, the
ratios of one run are what to read. Bounded in time; stops what it started by PID.
"""

from __future__ import annotations

import argparse
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the NSD and authdns start-up, free ports)

ORIGIN = compare.ORIGIN
HOST = compare.HOST
LOST_AFTER = 2.0  # seconds without an answer: lost


def master(hosts: int, serial: int) -> str:
    lines = [f"$ORIGIN {ORIGIN}.", "$TTL 300", f"@ IN SOA ns1 hostmaster {serial} 14400 3600 1209600 3600",
             "@ IN NS ns1", "ns1 IN A 192.0.2.1"]
    lines += [f"@ IN MX 10 mx{i}" for i in range(1, 5)] + [f"mx{i} IN A 192.0.2.{10 + i}" for i in range(1, 5)]
    lines += [f"h{i} IN A 10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(hosts)]
    return "\n".join(lines) + "\n"


def yaml_zone(hosts: int, serial: int) -> str:
    records = [f"ttl: 300\nrecords:\n  \"@\":\n    SOA: {{serial: {serial}}}\n    NS: ns1\n",
               "    MX: [{preference: 10, exchange: mx1}, {preference: 10, exchange: mx2}, "
               "{preference: 10, exchange: mx3}, {preference: 10, exchange: mx4}]\n  ns1: {A: 192.0.2.1}\n"]
    records += [f"  mx{i}: {{A: 192.0.2.{10 + i}}}\n" for i in range(1, 5)]
    records += [f"  h{i}: {{A: 10.{i // 65536}.{i // 256 % 256}.{i % 256}}}\n" for i in range(hosts)]
    return "".join(records)


def wire_query(qid: int, name: str, qtype: int) -> bytes:
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    lost: int = 0

    def line(self, name: str) -> str:
        ordered = sorted(self.latencies) or [float("nan")]
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
        return (f"{name:<18} p50 {pick(0.5):6.2f} ms  p99 {pick(0.99):6.2f} ms  max {ordered[-1] * 1000:7.2f} ms  "
                f"lost {self.lost} of {len(self.latencies) + self.lost}")

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def load(port: int, rate: int, seconds: float, hosts: int, tick=None) -> Phase:
    """Fixed-rate UDP queries for ``seconds``; ``tick(now)`` is called between sends."""
    rng = random.Random(7)
    sockets = []
    selector = selectors.DefaultSelector()
    for _ in range(16):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect((HOST, port))
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    phase = Phase()
    waiting: dict[tuple[int, int], float] = {}
    begun = time.monotonic()
    sent = 0
    qid = 0
    while True:
        now = time.monotonic()
        if now - begun >= seconds and (not waiting or now - begun >= seconds + LOST_AFTER):
            break
        while now - begun < seconds and sent < (now - begun) * rate:
            qid = (qid + 1) & 0xFFFF
            sock = sockets[sent % len(sockets)]
            name = f"h{rng.randrange(hosts)}.{ORIGIN}" if rng.random() < 0.8 else ORIGIN
            try:
                sock.send(wire_query(qid, name, 1 if name != ORIGIN else 15))
            except BlockingIOError:
                phase.lost += 1
            else:
                waiting[(sock.fileno(), qid)] = time.monotonic()
            sent += 1
        if tick is not None:
            tick(now)
        for key, _ in selector.select(timeout=0.0005):
            while True:
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    break
                start = waiting.pop((key.fileobj.fileno(), struct.unpack("!H", data[:2])[0]), None)
                if start is not None:
                    phase.latencies.append(time.monotonic() - start)
        if sent % 512 == 0:
            for item, start in list(waiting.items()):
                if now - start > LOST_AFTER:
                    del waiting[item]
                    phase.lost += 1
    phase.lost += len(waiting)
    for sock in sockets:
        sock.close()
    return phase


class Reloader:
    """Every ``every`` seconds: the zone file rewritten with the next serial, then SIGHUP."""

    def __init__(self, pid: int, path: Path, text, every: float) -> None:
        self.pid, self.path, self.text, self.every = pid, path, text, every
        self.serial = 1
        self.next = time.monotonic() + every
        self.count = 0

    def __call__(self, now: float) -> None:
        if now < self.next:
            return
        self.next += self.every
        self.serial += 1
        temporary = self.path.with_suffix(".new")
        temporary.write_text(self.text(self.serial))
        os.replace(temporary, self.path)  # whole, never half-written
        os.kill(self.pid, signal.SIGHUP)
        self.count += 1


def measure(name: str, process: subprocess.Popen, port: int, zone_file: Path, text, args) -> tuple[Phase, Phase]:
    load(port, args.rate, 1.0, args.hosts)  # warm-up: caches filled
    quiet = load(port, args.rate, args.seconds, args.hosts)
    reloader = Reloader(process.pid, zone_file, text, args.every)
    busy = load(port, args.rate, args.seconds, args.hosts, reloader)
    print(quiet.line(f"{name} quiet"))
    print(busy.line(f"{name} reloading") + f"  ({reloader.count} reloads)")
    print(f"{name} p99 reloading / quiet: {busy.p99() / quiet.p99():.1f}", flush=True)
    return quiet, busy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--loop", default="auto")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(cpu) for cpu in args.client_cpus.split(",")})
    work = Path(tempfile.mkdtemp(prefix="authdns-reload-"))
    (work / "zones").mkdir()
    nsd_zone = work / f"{ORIGIN}.zone"
    nsd_zone.write_text(master(args.hosts, 1))
    authdns_zone = work / "zones" / f"{ORIGIN}.yaml"
    authdns_zone.write_text(yaml_zone(args.hosts, 1))
    results = {}
    nsd, port = compare.start_nsd(work, nsd_zone, args.workers, args.server_cpus)
    try:
        results["nsd"] = measure("nsd", nsd, port, nsd_zone, lambda serial: master(args.hosts, serial), args)
    finally:
        compare.stop(nsd)
    port = compare.free_port()
    authdns = subprocess.Popen(
        ["taskset", "-c", args.server_cpus, sys.executable, "-m", "authdns", "serve", "--zones", str(work / "zones"),
         "--listen", f"{HOST}:{port}", "--state-dir", str(work / "state"), "--log-level", "warning", "--no-watch",
         "--workers", str(args.workers), "--loop", args.loop], cwd=compare.ROOT, stdout=subprocess.DEVNULL)
    try:
        compare.wait_for(port, authdns, "authdns")
        results["authdns"] = measure("authdns", authdns, port, authdns_zone,
                                     lambda serial: yaml_zone(args.hosts, serial), args)
    finally:
        compare.stop(authdns)
    ratio = results["authdns"][1].p99() / results["nsd"][1].p99()
    print(f"authdns / nsd p99 while reloading: {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
