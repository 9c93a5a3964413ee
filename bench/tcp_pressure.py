#!/usr/bin/env python3
"""authdns beside NSD under hostile TCP, in one run, same zones (issue 15, items 7 and 9).

    python bench/tcp_pressure.py [--seconds 8] [--connections 1000] [--workers 1]
                                 [--server-cpus 0] [--client-cpus 1]

For each server, on loopback, one after the other (authdns, then NSD with server-count 1
and rrl-ratelimit: 0, serving the same zones exported by `authdns export`):

1. quiet: UDP queries for --seconds, no attack: the baseline latency;
2. idle: --connections TCP connections from 100 addresses (127.0.1.1-100) that send
   nothing, then 15 new TCP queries (from 127.0.0.2), each given 2 s;
3. trickle: the same connections sending one byte every 2 s, 20 new TCP queries;
4. pipeline: 200 connections from 10 addresses writing queries as fast as the server
   reads them and never reading an answer, for --seconds; meanwhile UDP queries (1 s
   timeout each) and a new TCP query after every 10 UDP ones; the server's resident
   memory (its children included) before and after.

It prints, per server and scenario, UDP answered/sent with median, 99th percentile and
slowest answer, new TCP answered/sent, and RSS growth. The machine is shared (2 cores):
latencies are noisy; pin with --server-cpus / --client-cpus (taskset) for steadier
figures. The attack clients and probes run in this process. Bounded: every scenario ends
by itself; the servers are stopped by PID. Needs: nsd (Debian: nsd).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import tcp_attacks  # noqa: E402 (tests/ is not a package)
from conftest import SHIPPED_ZONES, fresh_state_dir, run_authdns, start_server, stop_server  # noqa: E402
from differential import run_nsd, stop_nsd  # noqa: E402

HOST = "127.0.0.1"
PROBE = "127.0.0.2"
UDP_SOURCE = "127.0.0.3"


@dataclass
class Row:
    scenario: str
    probes: tcp_attacks.Probes
    rss_growth: int | None = None


def quiet(port: int, seconds: float) -> Row:
    probes = tcp_attacks.Probes()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tcp_attacks.probe_udp(probes, HOST, port, UDP_SOURCE, timeout=1.0)
    return Row("quiet", probes)


def idle(port: int, connections: int, trickling: bool) -> Row:
    socks = tcp_attacks.open_idle(HOST, port, tcp_attacks.sources(100), connections // 100)
    stop = threading.Event()
    probes = tcp_attacks.Probes()
    try:
        if trickling:
            threading.Thread(target=tcp_attacks.trickle, args=(socks, 15, 2.0, stop), daemon=True).start()
        for _ in range(20 if trickling else 15):
            tcp_attacks.probe_tcp(probes, HOST, port, PROBE, timeout=2.0)
            if trickling:
                stop.wait(0.25)  # spread over the trickle's rounds
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    return Row(f"{'trickle' if trickling else 'idle'} ({len(socks)} conns)", probes)


def pipeline(port: int, pid: int, seconds: float) -> Row:
    attack = tcp_attacks.flood(HOST, port, tcp_attacks.sources(10), 20)
    before = tcp_attacks.rss_bytes(pid)
    probes = tcp_attacks.Probes()
    peak = before
    try:
        attack.start(seconds + 2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(10):
                tcp_attacks.probe_udp(probes, HOST, port, UDP_SOURCE, timeout=1.0)
            tcp_attacks.probe_tcp(probes, HOST, port, PROBE, timeout=2.0)
            peak = max(peak, tcp_attacks.rss_bytes(pid))
    finally:
        attack.finish()
    return Row(f"pipeline ({len(attack.socks)} conns)", probes, peak - before)


def scenarios(port: int, pid: int, args: argparse.Namespace) -> list[Row]:
    rows = [quiet(port, args.seconds)]
    rows.append(idle(port, args.connections, trickling=False))
    time.sleep(3)  # let either server notice the closed connections before the next scenario
    rows.append(idle(port, args.connections, trickling=True))
    time.sleep(3)
    rows.append(pipeline(port, pid, args.seconds))
    return rows


def pin(pid: int, cpus: str | None) -> None:
    if cpus and shutil.which("taskset"):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], stdout=subprocess.DEVNULL, check=False)


def export_zones(zones: Path, state: Path, target: Path) -> list[tuple[str, str]]:
    target.mkdir()
    names = []
    for zone_file in sorted(zones.glob("*.yaml")):
        origin = zone_file.name[: -len(".yaml")] + "."
        result = run_authdns("export", zone_file, "--state-dir", str(state), timeout=30)
        if result.returncode != 0:
            raise SystemExit(f"export {zone_file} failed:\n{result.stderr}")
        (target / f"{origin}zone").write_text(result.stdout)
        names.append((origin, f"{origin}zone"))
    return names


def show(name: str, rows: list[Row]) -> None:
    for row in rows:
        p = row.probes
        udp = (f"UDP {p.udp_answered}/{p.udp_sent} p50 {p.udp_percentile(0.5) * 1000:.1f} ms "
               f"p99 {p.udp_percentile(0.99) * 1000:.1f} ms max {p.udp_slowest * 1000:.0f} ms") if p.udp_sent else ""
        tcp = f"new TCP {p.tcp_answered}/{p.tcp_sent} max {p.tcp_slowest * 1000:.0f} ms" if p.tcp_sent else ""
        rss = f"RSS +{row.rss_growth / (1 << 20):.1f} MiB" if row.rss_growth is not None else ""
        print(f"{name:8} {row.scenario:24} " + "; ".join(part for part in (udp, tcp, rss) if part))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server-cpus", default=None)
    parser.add_argument("--client-cpus", default=None)
    args = parser.parse_args()
    room = tcp_attacks.descriptor_room()
    if room < args.connections + 100:
        raise SystemExit(f"only {room} descriptors free here; lower --connections or raise ulimit -n")
    if args.client_cpus:
        pin(os.getpid(), args.client_cpus)
    base = Path(tempfile.mkdtemp(prefix="tcp-pressure-"))
    try:
        zones = base / "zones"
        shutil.copytree(SHIPPED_ZONES, zones)
        state = fresh_state_dir(zones)
        server = start_server(zones, "--state-dir", str(state), "--no-watch", workers=args.workers, loop=None)
        try:
            pin(server.process.pid, args.server_cpus)
            authdns_rows = scenarios(server.port, server.process.pid, args)
        finally:
            stop_server(server.process)
        nsd_base = base / "nsd"
        nsd_base.mkdir()
        names = export_zones(zones, state, nsd_base / "zones")
        nsd = run_nsd(nsd_base, nsd_base / "zones", names, "example.test.")
        try:
            pin(nsd.process.pid, args.server_cpus)
            nsd_rows = scenarios(nsd.port, nsd.process.pid, args)
        finally:
            stop_nsd(nsd)
        print(f"\n{args.connections} idle/trickling connections from 100 addresses; 200 pipelining from 10; "
              f"authdns --workers {args.workers} (defaults otherwise), NSD server-count 1 (tcp-count 100)")
        show("authdns", authdns_rows)
        show("nsd", nsd_rows)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
