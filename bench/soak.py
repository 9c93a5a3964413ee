#!/usr/bin/env python3
"""Soak: load, zone reloads every second and flapping health-check targets, all at once.

    python bench/soak.py [--seconds 180] [--workers 2] [--load dnsperf|python] [--rate 5000]

Starts, on 127.0.0.1 only: three SMTP greeters (the MX pool's health-check targets), one
of which stops and starts every 2 seconds; `authdns serve` on a zone with that pool; a
writer that rewrites the zone file in place every second (serial + 1); and the load:
dnsperf at --rate queries a second (mixed: the pool's MX, hosts, NXDOMAIN), or, with
--load python, a few dnspython clients asking one query at a time. At the end it prints
queries, lost answers, SERVFAILs, reloads seen, flaps, and the resident memory of the
server's processes (supervisor and workers together) after a 3 s warm-up and at the end.
Bounded by --seconds; everything it started is stopped by PID. The CI test
(tests/integration/test_soak.py) runs the same with --load python for a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "soak.test"
HOSTS = 200


@dataclass
class Result:
    queries: int = 0
    lost: int = 0
    servfail: int = 0
    reloads: int = 0
    flaps: int = 0
    serials_seen: set[int] = field(default_factory=set)
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    log_problems: list[str] = field(default_factory=list)


class Greeters:
    """SMTP greeters on 127.0.0.1 in a thread of their own; ``flap(i)`` stops or starts one."""

    def __init__(self, count: int) -> None:
        self.ports = [0] * count
        self.servers: list[asyncio.base_events.Server | None] = [None] * count
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        for index in range(count):
            self._call(self._start(index))

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 soak ESMTP\r\n")
            while line := await asyncio.wait_for(reader.readline(), 5):
                writer.write(b"221 bye\r\n" if line.upper().startswith(b"QUIT") else b"250 ok\r\n")
                await writer.drain()
                if line.upper().startswith(b"QUIT"):
                    break
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def _start(self, index: int) -> None:
        server = await asyncio.start_server(self._greet, "127.0.0.1", self.ports[index])
        self.ports[index] = server.sockets[0].getsockname()[1]
        self.servers[index] = server

    async def _stop(self, index: int) -> None:
        server = self.servers[index]
        if server is not None:
            server.close()
            self.servers[index] = None

    def flap(self, index: int) -> None:
        self._call(self._stop(index) if self.servers[index] is not None else self._start(index))

    def close(self) -> None:
        for index in range(len(self.servers)):
            self._call(self._stop(index))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def zone_text(ports: list[int], serial: int) -> str:
    members = "".join(f"        - {{preference: 10, exchange: mx{index + 1}, probe: '127.0.0.1:{port}'}}\n"
                      for index, port in enumerate(ports))
    hosts = "".join(f"  h{index}: {{A: 10.0.{index // 256}.{index % 256}}}\n" for index in range(HOSTS))
    return f"""ttl: 30
checks:
  smtp: {{kind: smtp, interval: 0.5, timeout: 0.5, rise: 1, fall: 1}}
records:
  "@":
    SOA: {{serial: {serial}}}
    NS: ns1
    MX:
      check: smtp
      records:
{members}  ns1: {{A: 192.0.2.1}}
  mx1: {{A: 192.0.2.11}}
  mx2: {{A: 192.0.2.12}}
  mx3: {{A: 192.0.2.13}}
{hosts}"""


def server_rss_mib(pid: int) -> float:
    """Resident memory of the server and its workers, MiB."""
    pids = [pid] + [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0
    for process in pids:
        for line in Path(f"/proc/{process}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def python_load(port: int, deadline: float, result: Result, clients: int = 4) -> None:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    questions = [(ORIGIN, "MX"), (f"h7.{ORIGIN}", "A"), (f"nothing.{ORIGIN}", "A"), (ORIGIN, "SOA")]
    lock = threading.Lock()

    def client(number: int) -> None:
        count = lost = servfail = 0
        serials = set()
        while time.monotonic() < deadline and count < 1_000_000:
            name, rdtype = questions[count % len(questions)]
            count += 1
            try:
                reply = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=2)
            except dns.exception.Timeout:
                lost += 1
                continue
            if reply.rcode() == dns.rcode.SERVFAIL:
                servfail += 1
            if rdtype == "SOA" and reply.answer:
                serials.add(reply.answer[0][0].serial)
        with lock:
            result.queries += count
            result.lost += lost
            result.servfail += servfail
            result.serials_seen |= serials

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def dnsperf_load(port: int, seconds: float, rate: int, work: Path, result: Result) -> None:
    queries = work / "queries.txt"
    lines = [f"{ORIGIN} MX", f"{ORIGIN} SOA"] + [f"h{index}.{ORIGIN} A" for index in range(HOSTS)] + \
            [f"nothing{index}.{ORIGIN} A" for index in range(50)]
    queries.write_text("\n".join(lines) + "\n")
    output = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l",
                             str(int(seconds)), "-Q", str(rate), "-c", "8"], capture_output=True, text=True,
                            timeout=seconds + 60).stdout
    result.queries += int(re.search(r"Queries sent:\s+(\d+)", output).group(1))
    result.lost += int(re.search(r"Queries lost:\s+(\d+)", output).group(1))
    servfail = re.search(r"SERVFAIL (\d+)", output)
    result.servfail += int(servfail.group(1)) if servfail else 0


def run_soak(seconds: float, workers: int = 2, load: str = "python", rate: int = 5000,
             out=sys.stdout) -> Result:
    result = Result()
    work = Path(tempfile.mkdtemp(prefix="authdns-soak-"))
    greeters = Greeters(3)
    zone = work / "zones" / f"{ORIGIN}.yaml"
    zone.parent.mkdir()
    serial = 1
    zone.write_text(zone_text(greeters.ports, serial))
    server = subprocess.Popen([sys.executable, "-m", "authdns", "serve", "--zones", str(zone.parent), "--listen",
                               "127.0.0.1:0", "--state-dir", str(work / "state"), "--workers", str(workers)],
                              cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
    log: list[str] = []
    port_box: list[int] = []

    def read_log() -> None:
        for line in server.stderr:
            log.append(line.rstrip("\n"))
            if not port_box and (found := re.search(r"\bready port=(\d+)", line)):
                port_box.append(int(found.group(1)))

    threading.Thread(target=read_log, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while not port_box and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.05)  # waiting for the ready line, bounded
        if not port_box:
            raise SystemExit("the server did not start:\n" + "\n".join(log[-20:]))
        port = port_box[0]
        started = time.monotonic()
        end = started + seconds
        loader = threading.Thread(target=python_load if load == "python" else dnsperf_load,
                                  args=(port, end, result) if load == "python" else (port, seconds, rate, work, result))
        loader.start()
        measured_start = False
        next_reload, next_flap = started + 1.0, started + 2.0
        while time.monotonic() < end:
            now = time.monotonic()
            if not measured_start and now - started >= min(3.0, seconds / 3):
                result.rss_start_mib = server_rss_mib(server.pid)
                measured_start = True
            if now >= next_reload:
                serial += 1
                zone.write_text(zone_text(greeters.ports, serial))  # in place, as an editor does
                next_reload += 1.0
            if now >= next_flap:
                greeters.flap(1)
                result.flaps += 1
                next_flap += 2.0
            time.sleep(0.05)  # the driver's tick
        loader.join(seconds + 90)
        result.rss_end_mib = server_rss_mib(server.pid)
        result.reloads = sum("reload done" in line for line in log)
        result.log_problems = [line for line in log if "Traceback" in line or "internal error" in line
                               or "worker exited" in line]
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        greeters.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"soak {seconds:g} s, {workers} workers, load {load}: {result.queries} queries, lost {result.lost}, "
          f"SERVFAIL {result.servfail}, reloads {result.reloads} (serials seen {len(result.serials_seen) or '-'}), "
          f"flaps {result.flaps}, RSS {result.rss_start_mib:.1f} -> {result.rss_end_mib:.1f} MiB, "
          f"log problems {len(result.log_problems)}", file=out)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--load", choices=["dnsperf", "python"], default="dnsperf")
    parser.add_argument("--rate", type=int, default=5000, help="dnsperf queries per second (default 5000)")
    args = parser.parse_args()
    if args.load == "dnsperf" and shutil.which("dnsperf") is None:
        print("dnsperf is not installed (Debian: apt-get install dnsperf); or use --load python", file=sys.stderr)
        return 2
    result = run_soak(args.seconds, args.workers, args.load, args.rate)
    return 0 if not (result.lost or result.servfail or result.log_problems) else 1


if __name__ == "__main__":
    sys.exit(main())
