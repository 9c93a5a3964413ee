#!/usr/bin/env python3
"""authdns beside NSD on one machine, same zone, same dnsperf query file, in one run.

    python bench/compare.py [--rounds 3] [--seconds 10] [--rate 20000] [--keep DIR]
                            [--workers 1] [--server-cpus 0] [--dnsperf-cpus 1]
                            [--policy round-robin|weighted|promote] [--ecs ADDR/LEN]

What it does (README, "Benchmark"):
1. writes a master file: an MX pool of 4 equal-preference exchangers (rotated), a
   multihomed host with 4 addresses (rotated), 10,000 hosts, a wildcard; converts it with
   `authdns import` into a YAML zone (so authdns serves it with round-robin on, its
   default for RRsets of several records) and gives NSD the same master file;
   ``--policy weighted`` makes the MX pool and the multihomed host weighted 4:3:2:1,
   ``--policy promote`` makes them answer 2 of 4 with the first MX promoted (NSD
   answers the plain RRsets: the same records, so the same sizes give or take);
2. writes a mixed query file (hosts A, MX pool, multihomed A, wildcard matches,
   NXDOMAIN, NODATA AAAA);
3. starts NSD (rrl-ratelimit: 0: Debian's NSD drops answers otherwise) and authdns
   on loopback, each with --workers processes (NSD: server-count; default 1, the
   issue's target), pinned to --server-cpus with taskset while dnsperf runs on
   --dnsperf-cpus (on 2 cores dnsperf needs a core of its own);
4. after a warm-up run against each (--warmup seconds, not counted: authdns fills its
   answer cache on first queries), runs dnsperf against NSD, authdns, NSD, authdns, ...
   (--rounds times), UDP at full speed, then one fixed-rate UDP run each (--rate q/s), then one TCP run each;
5. prints queries/s, lost queries and latency per run, the authdns/NSD ratio per round
   and its median.

``--ecs ADDR/LEN`` sends an EDNS Client Subnet option (RFC 7871) in every query (dnsperf
``-E 8:HEX``): authdns answers those on its slow path and echoes the option; NSD ignores it.

Bounded: every dnsperf run lasts --seconds; the servers are stopped by PID at the end.
Only 127.0.0.1 is used. Needs: nsd, dnsperf, taskset (Debian: nsd, dnsperf, util-linux).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "bench.test"
HOSTS = 10_000
HOST = "127.0.0.1"


def master_file() -> str:
    lines = [f"$ORIGIN {ORIGIN}.", "$TTL 300",
             "@ IN SOA ns1 hostmaster 2026112301 14400 3600 1209600 3600",
             "@ IN NS ns1", "ns1 IN A 192.0.2.1",
             "@ IN MX 10 mx1", "@ IN MX 10 mx2", "@ IN MX 10 mx3", "@ IN MX 10 mx4", "@ IN MX 50 backup"]
    lines += [f"mx{i} IN A 192.0.2.{10 + i}" for i in range(1, 5)] + ["backup IN A 192.0.2.50"]
    lines += [f"smtp IN A 198.51.100.{i}" for i in range(1, 5)]
    lines += [f"h{i} IN A 10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(HOSTS)]
    lines += ["*.wild IN A 203.0.113.7", "*.wild IN MX 10 mx1"]
    return "\n".join(lines) + "\n"


def balanced(zone_yaml: str, policy: str) -> str:
    """The imported zone with the MX pool and the multihomed host under ``policy``."""
    if policy == "round-robin":
        return zone_yaml
    zone = yaml.safe_load(zone_yaml)
    records = zone["records"]
    weights = (4, 3, 2, 1)
    if policy == "weighted":
        mx = [{"preference": 10, "exchange": f"mx{i}", "weight": weight} for i, weight in enumerate(weights, 1)]
        records["@"]["MX"] = {"policy": "weighted", "records": mx + [{"preference": 50, "exchange": "backup"}]}
        records["smtp"]["A"] = {"policy": "weighted", "records": [
            {"address": address, "weight": weight} for address, weight in zip(records["smtp"]["A"], weights)]}
    else:
        records["@"]["MX"] = {"promote": True, "answer": 2, "records": records["@"]["MX"]}
        records["smtp"]["A"] = {"answer": 2, "records": records["smtp"]["A"]}
    return yaml.safe_dump(zone, sort_keys=False)


def query_file(count: int = 50_000) -> str:
    rng = random.Random(1)
    choices = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.50:
            choices.append(f"h{rng.randrange(HOSTS)}.{ORIGIN} A")
        elif roll < 0.65:
            choices.append(f"{ORIGIN} MX")
        elif roll < 0.75:
            choices.append(f"smtp.{ORIGIN} A")
        elif roll < 0.85:
            choices.append(f"u{rng.randrange(1000)}.wild.{ORIGIN} A")
        elif roll < 0.95:
            choices.append(f"nx{rng.randrange(1000)}.{ORIGIN} A")
        else:
            choices.append(f"h{rng.randrange(HOSTS)}.{ORIGIN} AAAA")
    return "\n".join(choices) + "\n"


def free_port() -> int:
    for _ in range(50):
        udp, tcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket()
        try:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind((HOST, port))
            except OSError:
                continue
            return port
        finally:
            udp.close()
            tcp.close()
    raise SystemExit("no free port")


def answers(port: int) -> bool:
    query = bytes.fromhex("abcd0000000100000000000005626e63680474657374000006000" + "1")
    query = b"\xab\xcd\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(
        bytes([len(label)]) + label.encode() for label in ORIGIN.split(".")) + b"\x00\x00\x06\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        try:
            sock.sendto(query, (HOST, port))
            return sock.recv(512)[:2] == b"\xab\xcd"
        except OSError:
            return False


def wait_for(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start (exit {process.poll()})")
        time.sleep(0.1)


def start_nsd(work: Path, master: Path, workers: int, cpus: str, rrl: int = 0) -> tuple[subprocess.Popen, int]:
    """NSD on the master file; ``rrl``: its rrl-ratelimit (0: off, as the speed runs
    need: Debian's NSD limits by default); bench/rrl_flood.py sets one."""
    port = free_port()
    conf = work / "nsd.conf"
    conf.write_text(f"""server:
    port: {port}
    ip-address: {HOST}
    server-count: {workers}
    reuseport: {"yes" if workers > 1 else "no"}
    rrl-ratelimit: {rrl}
    rrl-whitelist-ratelimit: {rrl}
    rrl-slip: 2
    zonesdir: "{work}"
    pidfile: "{work}/nsd.pid"
    database: ""
    zonelistfile: "{work}/zone.list"
    xfrdfile: "{work}/xfrd.state"
    username: ""
    chroot: ""
    logfile: "{work}/nsd.log"
remote-control:
    control-enable: no
zone:
    name: {ORIGIN}
    zonefile: {master}
""")
    nsd = shutil.which("nsd") or "/usr/sbin/nsd"
    process = subprocess.Popen(["taskset", "-c", cpus, nsd, "-d", "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port, process, "nsd")
    return process, port


def start_authdns(work: Path, workers: int, cpus: str, loop: str,
                  extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", cpus, sys.executable, "-m", "authdns", "serve", "--zones", str(work / "zones"),
         "--listen", f"{HOST}:{port}", "--state-dir", str(work / "state"), "--log-level", "warning",
         "--workers", str(workers), "--loop", loop, *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port, process, "authdns")
    return process, port


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@dataclass
class Run:
    server: str
    mode: str
    qps: float
    sent: int
    lost: int
    latency_avg_ms: float
    latency_max_ms: float


def ecs_option(subnet: str) -> list[str]:
    """dnsperf's arguments for an EDNS Client Subnet option of ``ADDR/LEN`` (RFC 7871 §6)."""
    network = ipaddress.ip_network(subnet, strict=False)
    octets = network.network_address.packed[:(network.prefixlen + 7) // 8]
    data = struct.pack("!HBB", 1 if network.version == 4 else 2, network.prefixlen, 0) + octets
    return ["-E", f"8:{data.hex()}"]


def dnsperf(port: int, queries: Path, seconds: int, cpus: str, mode: str = "udp", rate: int | None = None,
            clients: int = 1, options: list[str] | None = None) -> Run:
    """One dnsperf run. ``clients``: UDP sockets (source ports): SO_REUSEPORT spreads
    clients over workers by address hash, so one client reaches one worker only.
    ``options``: more dnsperf arguments (an EDNS option)."""
    command = ["taskset", "-c", cpus, "dnsperf", "-s", HOST, "-p", str(port), "-d", str(queries),
               "-l", str(seconds), "-m", mode, "-c", "4" if mode == "tcp" else str(clients), "-q", "200"]
    if rate is not None:
        command += ["-Q", str(rate)]
    command += options or []
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout

    def field(pattern: str) -> str:
        match = re.search(pattern, output)
        if match is None:
            raise SystemExit(f"unexpected dnsperf output:\n{output}")
        return match.group(1)

    latency = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min [\d.]+, max ([\d.]+)\)", output)
    return Run("", mode if rate is None else f"{mode}@{rate}", float(field(r"Queries per second:\s+([\d.]+)")),
               int(field(r"Queries sent:\s+(\d+)")), int(field(r"Queries lost:\s+(\d+)")),
               float(latency.group(1)) * 1000, float(latency.group(2)) * 1000)


def show(run: Run) -> None:
    print(f"  {run.server:<8} {run.mode:<10} {run.qps:>10.0f} q/s  lost {run.lost:>6} of {run.sent:>8}  "
          f"latency avg {run.latency_avg_ms:7.3f} ms  max {run.latency_max_ms:8.3f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--warmup", type=int, default=3,
                        help="seconds of dnsperf against each server before measuring, not counted (default 3): "
                        "authdns fills its answer cache on first queries")
    parser.add_argument("--workers", type=int, default=1, help="authdns --workers and NSD server-count (default 1)")
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"],
                        help="authdns --loop (default auto: uvloop when installed)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for both servers (default 0)")
    parser.add_argument("--dnsperf-cpus", default="1", help="taskset CPU list for dnsperf (default 1)")
    parser.add_argument("--policy", default="round-robin", choices=["round-robin", "weighted", "promote"],
                        help="how authdns balances the MX pool and the multihomed host (default round-robin)")
    parser.add_argument("--ecs", metavar="ADDR/LEN", help="send this EDNS Client Subnet in every query (default: none)")
    args = parser.parse_args()
    extra = ecs_option(args.ecs) if args.ecs else []
    for tool in ("nsd", "dnsperf", "taskset"):
        if shutil.which(tool) is None and not (tool == "nsd" and os.access("/usr/sbin/nsd", os.X_OK)):
            print(f"{tool} is not installed (Debian: apt-get install nsd dnsperf util-linux)", file=sys.stderr)
            return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="authdns-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    master = work / f"{ORIGIN}.zone"
    master.write_text(master_file())
    (work / "zones").mkdir(exist_ok=True)
    imported = subprocess.run([sys.executable, "-m", "authdns", "import", str(master), "--origin", ORIGIN],
                              cwd=ROOT, capture_output=True, text=True, check=True)
    (work / "zones" / f"{ORIGIN}.yaml").write_text(balanced(imported.stdout, args.policy))
    queries = work / "queries.txt"
    queries.write_text(query_file())
    nsd, nsd_port = start_nsd(work, master, args.workers, args.server_cpus)
    authdns, authdns_port = start_authdns(work, args.workers, args.server_cpus, args.loop)
    ports = {"nsd": nsd_port, "authdns": authdns_port}
    ratios = []
    try:
        clients = 1 if args.workers == 1 else 4 * args.workers
        if args.warmup:
            for server in ("nsd", "authdns"):
                dnsperf(ports[server], queries, args.warmup, args.dnsperf_cpus, clients=clients, options=extra)
        print(f"UDP, full speed, {args.seconds} s per run, {args.workers} worker(s) per server on CPU "
              f"{args.server_cpus}, dnsperf ({clients} clients) on CPU {args.dnsperf_cpus}, authdns --loop {args.loop}, "
              f"MX pool and multihomed host: {args.policy}" + (f", ECS {args.ecs}" if args.ecs else ""))
        for round_ in range(1, args.rounds + 1):
            result = {}
            for server in ("nsd", "authdns"):
                run = dnsperf(ports[server], queries, args.seconds, args.dnsperf_cpus, clients=clients,
                              options=extra)
                run.server = server
                result[server] = run
                show(run)
            ratios.append(result["authdns"].qps / result["nsd"].qps)
            print(f"  round {round_}: authdns/NSD = {ratios[-1]:.3f}")
        print(f"median ratio authdns/NSD over {len(ratios)} rounds: {statistics.median(ratios):.3f}")
        print(f"UDP at a fixed {args.rate} q/s")
        fixed = {}
        for server in ("nsd", "authdns"):
            fixed[server] = run = dnsperf(ports[server], queries, args.seconds, args.dnsperf_cpus, rate=args.rate,
                                          clients=clients, options=extra)
            run.server = server
            show(run)
        print(f"  average latency authdns/NSD = {fixed['authdns'].latency_avg_ms / fixed['nsd'].latency_avg_ms:.2f}")
        print("TCP, full speed (4 connections)")
        tcp = {}
        for server in ("nsd", "authdns"):
            tcp[server] = run = dnsperf(ports[server], queries, args.seconds, args.dnsperf_cpus, mode="tcp",
                                        options=extra)
            run.server = server
            show(run)
        print(f"  TCP ratio authdns/NSD = {tcp['authdns'].qps / tcp['nsd'].qps:.3f}")
    finally:
        stop(authdns)
        stop(nsd)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
