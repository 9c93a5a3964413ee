#!/usr/bin/env python3
"""A large health-checked pool under load: memory, latency, `status` and health traffic.

    python bench/large_pool.py [--members 500] [--rate 5000] [--seconds 60] [--interval 1]
                               [--flap 25] [--answer 4] [--workers 2] [--no-nsd]
                               [--tracemalloc FILE]

What it does, on loopback only:
1. listens with one process (this one, a thread of its own) on --members addresses
   127.77.X.Y, one port, each an SMTP greeter (220, 250 to EHLO, 221 to QUIT): the
   members of one A RRset, round robin, ``answer: N``, checked by an smtp check probing
   every --interval seconds (rise 1, fall 1: every flap flips);
2. starts ``authdns serve`` (--workers) on that zone, and NSD beside it on the same
   names with the pool as N plain A records (the size of authdns's answers; NSD has no
   checks), as the q/s reference;
3. runs dnsperf at --rate q/s for --seconds (each response's latency from ``-v``), while
   every second --flap members go down (their listener closes: connection refused) or
   come back; meanwhile samples the supervisor's and workers' RSS every 2 s and times a
   ``status`` request over the control socket every 5 s;
4. then takes every member down and measures q/s at full speed for 5 s (fail open),
   authdns then NSD;
5. prints: RSS (supervisor first/last/peak after a 10 s warm-up, workers), latency
   p50/p99/max, answered/sent, status times, health publishes and health messages to
   workers (with their bytes) per second when the server reports them, and the q/s.

``--tracemalloc FILE`` runs the supervisor under tracemalloc and writes the top 25
allocation sites growing since the warm-up to FILE every 15 s (diagnosis: it slows the
server, so its figures are not the server's own). Bounded by --seconds; everything it
started is stopped by PID. ``tests/integration/test_large_pool.py`` runs the functional
part (counts, memory, status, answers) at CI size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: the authdns beside this script
ORIGIN = "pool.test"
NAME = f"mail.{ORIGIN}"
WARMUP = 10.0  # seconds of load before the first RSS figure counts

TRACE_SCRIPT = r"""
import sys, threading, time, tracemalloc
tracemalloc.start(8)
out, every, warmup = sys.argv[1], 15.0, {warmup}
def watch():
    time.sleep(warmup)
    base = tracemalloc.take_snapshot()
    while True:
        time.sleep(every)
        now = tracemalloc.take_snapshot()
        with open(out, "w") as file:
            file.write(f"traced {{tracemalloc.get_traced_memory()[0] / 2**20:.1f}} MiB\n")
            for stat in now.compare_to(base, "traceback")[:25]:
                file.write(f"{{stat}}\n")
                for frame in stat.traceback.format()[-8:]:
                    file.write(f"    {{frame}}\n")
threading.Thread(target=watch, daemon=True).start()
from authdns.cli.commands import main
sys.exit(main(sys.argv[2:]))
"""


def member_address(index: int) -> str:
    return f"127.77.{index // 250}.{index % 250 + 1}"


class PoolListeners:
    """One SMTP greeter per member address, all in one thread's event loop; ``down(i)``
    closes a listener (connections refused), ``up(i)`` opens it again."""

    def __init__(self, count: int, port: int) -> None:
        self.count, self.port = count, port
        self.servers: list[asyncio.base_events.Server | None] = [None] * count
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pool listeners", daemon=True)
        self.thread.start()
        self._call(self._start_all())

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 pool ESMTP\r\n")
            while line := await asyncio.wait_for(reader.readline(), 5):
                quit_ = line.upper().startswith(b"QUIT")
                writer.write(b"221 bye\r\n" if quit_ else b"250 ok\r\n")
                await writer.drain()
                if quit_:
                    break
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def _start(self, index: int) -> None:
        if self.servers[index] is None:
            self.servers[index] = await asyncio.start_server(self._greet, member_address(index), self.port,
                                                             reuse_address=True, backlog=16)

    async def _start_all(self) -> None:
        for index in range(self.count):
            await self._start(index)

    async def _stop(self, index: int) -> None:
        server, self.servers[index] = self.servers[index], None
        if server is not None:
            server.close()

    def is_up(self, index: int) -> bool:
        return self.servers[index] is not None

    def set(self, index: int, up: bool) -> None:
        self._call(self._start(index) if up else self._stop(index))

    def set_all(self, up: bool) -> None:
        for index in range(self.count):
            self.set(index, up)

    def close(self) -> None:
        self.set_all(False)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def free_port(hosts: list[str]) -> int:
    """A TCP port free on every one of ``hosts`` (and UDP+TCP on 127.0.0.1) when asked."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        try:
            for host in hosts:
                with socket.socket() as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise SystemExit("no port free on every member address")


def zone_text(members: int, port: int, answer: int, interval: float, checked: bool = True) -> str:
    records = "".join(f"        - {{address: {member_address(index)}}}\n" for index in range(members))
    check = "      check: smtp\n" if checked else ""
    limit = f"      answer: {answer}\n" if answer else ""
    return f"""ttl: 300
checks:
  smtp: {{kind: smtp, port: {port}, interval: {interval}, timeout: 0.5, rise: 1, fall: 1}}
records:
  "@":
    SOA: {{serial: 1}}
    NS: ns1
  ns1: {{A: 192.0.2.1}}
  mail:
    A:
{check}{limit}      records:
{records}"""


def master_file(answer: int, members: int) -> str:
    """NSD's zone: the same names, the pool as the records of one authdns answer."""
    count = answer or members
    lines = [f"$ORIGIN {ORIGIN}.", "$TTL 300", "@ IN SOA ns1 hostmaster 1 14400 3600 1209600 3600",
             "@ IN NS ns1", "ns1 IN A 192.0.2.1"]
    lines += [f"mail IN A {member_address(index)}" for index in range(count)]
    return "\n".join(lines) + "\n"


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (a figure other load on the machine
    does not inflate, unlike latency)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class Result:
    sent: int = 0
    answered: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, one per response
    rss: list[tuple[float, float, float]] = field(default_factory=list)  # (t, supervisor MiB, workers MiB)
    status_times: list[float] = field(default_factory=list)  # seconds; inf: failed or timed out
    publishes: tuple[int, int] | None = None  # health views published: (at warm-up, at end)
    messages: tuple[int, int, int, int] | None = None  # health messages and bytes (warm-up, end)
    flips: int = 0
    measured: float = 0.0  # seconds between warm-up and end
    qps_fail_open: float = 0.0
    qps_nsd: float = 0.0
    qps_nsd_fail_open: float = 0.0
    answers_wrong: int = 0  # answers outside the pool (python load)
    cpu: tuple[float, float, float, float] | None = None  # supervisor, workers CPU s at warm-up and end

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("inf")


def status(state_dir: Path, timeout: float = 5.0) -> tuple[float, dict | None]:
    from authdns.ops.control import request
    started = time.monotonic()
    try:
        reply = request(state_dir / "control.sock", {"command": "status"}, timeout)
    except (OSError, ValueError):
        return float("inf"), None
    return time.monotonic() - started, reply


def health_counts(reply: dict | None) -> tuple[int | None, tuple[int, int] | None]:
    """Health views published and (messages, bytes) sent to workers, if the server says."""
    if reply is None:
        return None, None
    publishes = reply.get("health_publishes")
    workers = reply.get("workers") or []
    if workers and all("health_messages" in worker for worker in workers):
        return publishes, (sum(worker["health_messages"] for worker in workers),
                           sum(worker["health_bytes"] for worker in workers))
    return publishes, None


def start_server(work: Path, workers: int, trace: str | None) -> tuple[subprocess.Popen, int, list[str]]:
    args = ["serve", "--zones", str(work / "zones"), "--listen", "127.0.0.1:0", "--state-dir", str(work / "state"),
            "--workers", str(workers)]
    if trace:
        command = [sys.executable, "-c", TRACE_SCRIPT.format(warmup=WARMUP + 5), trace] + args
    else:
        command = [sys.executable, "-m", "authdns"] + args
    server = subprocess.Popen(command + ["--log-level", "info"], cwd=ROOT, stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True,
                              env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT)))
    log: list[str] = []
    port_box: list[int] = []

    def read_log() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            if len(log) < 10_000:
                log.append(line.rstrip("\n"))
            if not port_box and (found := re.search(r"\bready port=(\d+)", line)):
                port_box.append(int(found.group(1)))

    threading.Thread(target=read_log, daemon=True).start()
    deadline = time.monotonic() + 60
    while not port_box and time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.05)  # waiting for the ready line, bounded
    if not port_box:
        stop(server)
        raise SystemExit("the server did not start:\n" + "\n".join(log[-20:]))
    return server, port_box[0], log


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def dnsperf(port: int, queries: Path, seconds: float, rate: int | None, verbose: bool) -> tuple[str, int, int, float]:
    """One dnsperf run: its output, sent, completed, q/s."""
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(max(1, round(seconds))),
               "-c", "4", "-q", "500", "-t", "2"]
    if rate:
        command += ["-Q", str(rate)]
    if verbose:
        command.append("-v")
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    sent = int(re.search(r"Queries sent:\s+(\d+)", output).group(1))
    done = int(re.search(r"Queries completed:\s+(\d+)", output).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", output).group(1))
    return output, sent, done, qps


def python_load(port: int, seconds: float, rate: int, result: Result, up: PoolListeners) -> None:
    """dnspython at up to ``rate`` q/s, one query at a time (when dnsperf is missing, and
    the CI test): latencies, and answers checked (only up members, or all when all down)."""
    import dns.exception
    import dns.message
    import dns.query
    query = dns.message.make_query(NAME, "A")
    end = time.monotonic() + seconds
    gap = 1.0 / rate
    next_at = time.monotonic()
    while (now := time.monotonic()) < end:
        if now < next_at:
            time.sleep(next_at - now)  # pacing the load, not synchronising
        next_at += gap
        result.sent += 1
        started = time.monotonic()
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
        except dns.exception.Timeout:
            continue
        result.latencies.append(time.monotonic() - started)
        result.answered += 1
        addresses = [int(item.address.split(".")[2]) * 250 + int(item.address.split(".")[3]) - 1
                     for rrset in reply.answer for item in rrset]
        if not addresses or not all(0 <= index < up.count for index in addresses):
            result.answers_wrong += 1


def run_pool(members: int = 500, rate: int = 5000, seconds: float = 60, interval: float = 1.0, flap: int = 25,
             answer: int = 4, workers: int = 2, nsd: bool = True, load: str = "dnsperf",
             trace: str | None = None, out=sys.stdout) -> Result:
    result = Result()
    work = Path(tempfile.mkdtemp(prefix="authdns-pool-"))
    port = free_port([member_address(index) for index in range(0, members, 50)] + [member_address(members - 1)])
    listeners = PoolListeners(members, port)
    (work / "zones").mkdir()
    (work / "zones" / f"{ORIGIN}.yaml").write_text(zone_text(members, port, answer, interval))
    queries = work / "queries.txt"
    queries.write_text(f"{NAME} A\n")
    server = nsd_process = None
    try:
        server, dns_port, log = start_server(work, workers, trace)
        print(f"large pool: {members} members checked every {interval:g} s, {flap} flapping a second, "
              f"answer {answer or 'all'}, {workers} workers, {rate} q/s for {seconds:g} s "
              f"(a shared machine: latency and q/s are noisy)", file=out, flush=True)
        loader = threading.Thread(target=_load, args=(load, dns_port, queries, seconds, rate, result, listeners))
        started = time.monotonic()
        loader.start()
        flipped_up = True
        next_flap, next_sample, next_status = started + 1, started, started + 1
        warm: tuple | None = None
        warm_cpu = (0.0, 0.0)
        turn = 0
        while loader.is_alive() and time.monotonic() < started + seconds + 90:
            now = time.monotonic()
            if now >= next_flap and now < started + seconds - 1:
                # half go down, the ones that went down last time come back: the pool stays mostly up
                for step in range(flap):
                    index = (turn * flap + step) % members
                    listeners.set(index, not listeners.is_up(index))
                    result.flips += 1
                turn += 1 if flipped_up else 0
                flipped_up = not flipped_up
                next_flap += 1
            if now >= next_sample:
                result.rss.append((now - started, rss_mib(server.pid),
                                   sum(rss_mib(child) for child in children(server.pid))))
                next_sample += 2
            if now >= next_status:
                took, reply = status(work / "state")
                result.status_times.append(took)
                publishes, messages = health_counts(reply)
                if warm is None and now - started >= WARMUP:
                    warm = (now, publishes, messages)
                    warm_cpu = (cpu_seconds(server.pid), sum(cpu_seconds(child) for child in children(server.pid)))
                if warm is not None and now < started + seconds:
                    result.cpu = (*warm_cpu, cpu_seconds(server.pid),
                                  sum(cpu_seconds(child) for child in children(server.pid)))
                if warm is not None and reply is not None:
                    result.measured = now - warm[0]
                    if publishes is not None and warm[1] is not None:
                        result.publishes = (warm[1], publishes)
                    if messages is not None and warm[2] is not None:
                        result.messages = (*warm[2], *messages)
                next_status += 5
            time.sleep(0.05)  # the driver's tick
        loader.join(120)
        # every member down: fail open, at full speed
        listeners.set_all(False)
        deadline = time.monotonic() + 3 * interval + 10
        while time.monotonic() < deadline:
            _, reply = status(work / "state")
            if reply is not None and any(rrset.get("fail_open") for rrset in reply.get("rrsets", [])):
                break
            time.sleep(0.2)  # polling the server's view, bounded
        if load == "dnsperf":
            result.qps_fail_open = dnsperf(dns_port, queries, 5, None, False)[3]
        if nsd and shutil.which("nsd") and load == "dnsperf":
            sys.path.insert(0, str(ROOT / "bench"))
            import compare
            compare.ORIGIN = ORIGIN
            master = work / "nsd.zone"
            master.write_text(master_file(answer, members))
            nsd_process, nsd_port = compare.start_nsd(work, master, 1, "0-1")
            result.qps_nsd = dnsperf(nsd_port, queries, 5, None, False)[3]
        report(result, out)
        if trace:
            print(f"tracemalloc top growth: {trace}", file=out)
    finally:
        if nsd_process is not None:
            stop(nsd_process)
        if server is not None:
            stop(server)
        listeners.close()
        shutil.rmtree(work, ignore_errors=True)
    return result


def _load(load: str, port: int, queries: Path, seconds: float, rate: int, result: Result,
          listeners: PoolListeners) -> None:
    if load == "python":
        python_load(port, seconds, rate, result, listeners)
        return
    output, result.sent, result.answered, _ = dnsperf(port, queries, seconds, rate, True)
    # -v: one line per response, its latency last (seconds)
    result.latencies = [float(match.group(1)) for match in re.finditer(r"^> \S+ .* ([\d.]+)$", output, re.M)]


def report(result: Result, out) -> None:
    warm = [sample for sample in result.rss if sample[0] >= WARMUP] or result.rss
    if warm:
        first, last = warm[0], warm[-1]
        peak = max(sample[1] for sample in warm)
        print(f"  supervisor RSS {first[1]:.1f} -> {last[1]:.1f} MiB (peak {peak:.1f}) from {first[0]:.0f} s to "
              f"{last[0]:.0f} s; workers {first[2]:.1f} -> {last[2]:.1f} MiB", file=out)
    print(f"  answered {result.answered} of {result.sent}; latency p50 {1000 * result.percentile(0.5):.2f} ms, "
          f"p99 {1000 * result.percentile(0.99):.2f} ms, max {1000 * result.percentile(1.0):.2f} ms", file=out)
    if result.cpu and result.measured:
        supervisor = (result.cpu[2] - result.cpu[0]) / result.measured
        workers = result.cpu[3] - result.cpu[1]
        answered = result.answered * result.measured / max(1.0, result.measured + WARMUP)  # about, after warm-up
        print(f"  CPU: supervisor {100 * supervisor:.0f} % of a core; workers {1e6 * workers / max(1.0, answered):.0f} us "
              f"per query answered", file=out)
    times = result.status_times
    print(f"  status: {len(times)} asked, slowest {max(times, default=0):.3f} s, median "
          f"{statistics.median(times) if times else 0:.3f} s", file=out)
    if result.publishes and result.measured:
        print(f"  health views published {(result.publishes[1] - result.publishes[0]) / result.measured:.1f}/s, "
              f"{result.flips / max(1.0, result.measured + WARMUP):.0f} listener flips/s", file=out)
    if result.messages and result.measured:
        messages = (result.messages[2] - result.messages[0]) / result.measured
        sent = (result.messages[3] - result.messages[1]) / result.measured
        print(f"  health messages to workers {messages:.1f}/s, {sent / 1024:.1f} KiB/s", file=out)
    if result.qps_fail_open:
        print(f"  every member down (fail open), full speed: authdns {result.qps_fail_open:.0f} q/s"
              + (f", NSD {result.qps_nsd:.0f} q/s (same answer size, no checks): ratio "
                 f"{result.qps_fail_open / result.qps_nsd:.3f}" if result.qps_nsd else ""), file=out)


def in_process(members: int, answer: int, flap: int, views: int = 20, per_view: int = 2500) -> list[float]:
    """The query path alone, no sockets, no other process: ``Responder.respond`` timed per
    query for a balanced answer of the pool while a health view with ``flap`` members
    flipped is published every ``per_view`` queries (at 5,000 q/s and 2 views a second,
    as the monitor coalesces them). Seconds per query, sorted; less exposed to a busy
    machine than latency over the network."""
    import random
    from types import MappingProxyType

    import dns.message

    from authdns.answering.query import Via
    from authdns.balancing.ordering import Balancer
    from authdns.configuration.config import ServerConfig
    from authdns.engine.responder import Responder
    from authdns.engine.state import StateHolder
    from authdns.health.monitor import HealthView, MemberHealth, Status
    from authdns.health.watchlist import watch_list
    from authdns.zones.loader import load_snapshot

    work = Path(tempfile.mkdtemp(prefix="authdns-pool-inprocess-"))
    try:
        (work / f"{ORIGIN}.yaml").write_text(zone_text(members, 2525, answer, 1.0))
        snapshot = load_snapshot(work).snapshot
    finally:
        shutil.rmtree(work, ignore_errors=True)
    holder = StateHolder(snapshot)
    keys = list(watch_list(snapshot))
    health = {key: MemberHealth(Status.UP, 0.0, 0.001, None, ()) for key in keys}
    holder.publish(health=HealthView(MappingProxyType(dict(health))))
    responder = Responder(holder, ServerConfig(), Balancer())
    packet = dns.message.make_query(NAME, "A").to_wire()
    peer = ("127.0.0.1", 5353)
    for _ in range(2 * members):
        responder.respond(packet, Via.UDP, peer)  # warm: the cycle met once
    rng = random.Random(1)
    timings = []
    clock = time.perf_counter
    for number in range(views):
        for key in rng.sample(keys, flap):
            down = health[key].status is Status.UP
            health[key] = MemberHealth(Status.DOWN if down else Status.UP, 0.0, None if down else 0.001, None, ())
        holder.publish(health=HealthView(MappingProxyType(dict(health)), number))
        for _ in range(per_view):
            started = clock()
            responder.respond(packet, Via.UDP, peer)
            timings.append(clock() - started)
    timings.sort()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval, seconds (default 1)")
    parser.add_argument("--flap", type=int, default=25, help="listeners flipped each second (default 25)")
    parser.add_argument("--answer", type=int, default=4, help="answer: N (0: every member; default 4)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-nsd", action="store_true", help="skip the NSD reference")
    parser.add_argument("--load", choices=["dnsperf", "python"], default="dnsperf")
    parser.add_argument("--tracemalloc", metavar="FILE", help="trace the supervisor's allocations into FILE")
    args = parser.parse_args()
    if args.load == "dnsperf" and shutil.which("dnsperf") is None:
        print("dnsperf is not installed (Debian: apt-get install dnsperf); or use --load python", file=sys.stderr)
        return 2
    run_pool(args.members, args.rate, args.seconds, args.interval, args.flap, args.answer, args.workers,
             not args.no_nsd, args.load, args.tracemalloc)
    timings = in_process(args.members, args.answer, args.flap)
    print(f"  in process (Responder.respond alone, a view with {args.flap} flips every 2,500 queries): "
          f"p50 {1e3 * timings[len(timings) // 2]:.3f} ms, p99 {1e3 * timings[int(0.99 * len(timings))]:.3f} ms, "
          f"max {1e3 * timings[-1]:.2f} ms, mean {1e6 * sum(timings) / len(timings):.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
