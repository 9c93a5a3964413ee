#!/usr/bin/env python3
"""Response rate limiting under floods of random names: authdns beside NSD, same zone,
same rate, same flood, in one run.

    python bench/rrl_flood.py [--rate 200] [--seconds 3] [--qps 2000] [--workers 1 2]
                              [--server-cpus 0] [--flood-cpus 1]

For each number of workers (authdns --workers, NSD server-count with reuseport), starts
NSD (``rrl-ratelimit`` = ``--rate``, ``rrl-slip: 2``) and authdns (``--rrl-rate``,
``--rrl-slip 2``) on bench/compare.py's zone, then floods each from 127.0.0.2 for
``--seconds`` at ``--qps`` from 16 source ports (so SO_REUSEPORT spreads the flood over
the workers), with names never asked before:
* ``wildcard``: ``r<n>.wild.bench.test`` A, an answer synthesized from ``*.wild``;
* ``nxdomain``: ``r<n>.bench.test`` A, NXDOMAIN;
and prints, per server, queries sent, full answers, truncated ones, and full answers
received in the flood's last second (the steady state), beside the token bucket's
bound, rate × seconds + burst (one second's worth), where seconds run from the first
query to the last reply (a server behind on its backlog checks later). The servers count differently: authdns is a token bucket
of one second's burst; NSD keeps a smoothed rate (rate = this second + half the last)
and blocks a bucket while it is over, so a flood at several times the limit gets close
to nothing from NSD after its first second, and NSD's tables are per server process
(NSD rrl.c: one mmap per child).

Bounded: each flood lasts ``--seconds``, replies are read for one second more; servers
are stopped by PID. Only loopback. Needs nsd and taskset. Figures are noisy on a
shared machine; the sender is Python, so ``--qps`` is what it asks, the figure is what
it sent.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import ORIGIN, ROOT, master_file, start_authdns, start_nsd, stop  # noqa: E402

SOURCE = "127.0.0.2"
SOCKETS = 16


def question(name: str, ident: int) -> bytes:
    """An A query for ``name``, no EDNS (the smallest query: what an amplifier wants)."""
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return ident.to_bytes(2, "big") + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + wire + b"\x00\x01\x00\x01"


def flood(port: int, names, seconds: float, qps: int) -> dict[str, float]:
    """Send ``names(n)`` at ``qps`` for ``seconds``; what came back, by kind and second."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
    sent = full = truncated = late_full = 0
    last_reply = 0.0
    for sock in socks:
        sock.bind((SOURCE, 0))
        sock.setblocking(False)
    started = time.monotonic()

    def collect() -> None:
        nonlocal full, truncated, late_full, last_reply
        now = time.monotonic()
        for sock in socks:
            while True:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                last_reply = now
                if reply[2] & 0x02:
                    truncated += 1
                else:
                    full += 1
                    if seconds - 1.0 <= now - started < seconds:
                        late_full += 1

    try:
        while (elapsed := time.monotonic() - started) < seconds:
            while sent < qps * elapsed:
                socks[sent % SOCKETS].sendto(question(names(sent), sent & 0xFFFF), ("127.0.0.1", port))
                sent += 1
            collect()
            time.sleep(0.001)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and full + truncated < sent:
            time.sleep(0.01)
            collect()
    finally:
        for sock in socks:
            sock.close()
    return {"sent": sent, "full": full, "truncated": truncated, "last second": late_full,
            "window": max(last_reply - started, seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="both servers' rate limit, answers/s (default 200)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--qps", type=int, default=2000, help="the flood's pace asked for (default 2000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for both servers (default 0)")
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    args = parser.parse_args()
    if shutil.which("nsd") is None and not Path("/usr/sbin/nsd").exists():
        print("nsd is not installed (Debian: apt-get install nsd)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="authdns-rrl-"))
    master = work / f"{ORIGIN}.zone"
    master.write_text(master_file())
    (work / "zones").mkdir()
    imported = subprocess.run([sys.executable, "-m", "authdns", "import", str(master), "--origin", ORIGIN],
                              cwd=ROOT, capture_output=True, text=True, check=True)
    (work / "zones" / f"{ORIGIN}.yaml").write_text(imported.stdout)
    bound = args.rate * args.seconds + args.rate
    print(f"rate {args.rate}/s, slip 2, flood {args.seconds:g} s at {args.qps} q/s asked from {SOURCE} "
          f"({SOCKETS} ports); token-bucket bound {bound:.0f} full answers, {args.rate} in the last second")
    floods = {"wildcard": lambda n, tag=time.time_ns() % 100000: f"r{n}x{tag}.wild.{ORIGIN}",
              "nxdomain": lambda n, tag=time.time_ns() % 100000: f"r{n}x{tag}.{ORIGIN}"}
    for workers in args.workers:
        for kind, names in floods.items():
            row = {}
            for server in ("nsd", "authdns"):
                if server == "nsd":
                    process, port = start_nsd(work, master, workers, args.server_cpus, rrl=args.rate)
                else:
                    process, port = start_authdns(work, workers, args.server_cpus, args.loop,
                                                  ("--rrl-rate", str(args.rate), "--rrl-slip", "2"))
                try:
                    row[server] = flood(port, names, args.seconds, args.qps)
                finally:
                    stop(process)
            for server, seen in row.items():
                print(f"{workers} worker(s) {kind:8} {server:7} sent {seen['sent']:6} full {seen['full']:6} "
                      f"truncated {seen['truncated']:6} full in the flood's last second {seen['last second']:5}; "
                      f"last reply at {seen['window']:.2f} s: bound {args.rate * seen['window'] + args.rate:.0f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
