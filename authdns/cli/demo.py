"""``authdns demo``: DNS-side mail load balancing, shown as delivered mail, on loopback.

It starts three SMTP sinks (aiosmtpd, the ``demo`` extra) on 127.0.0.11, .12 and .13,
writes a zone whose MX pool is weighted 3:1:1 with ``promote`` (every answer keeps the
others as fallback) and an SMTP health check, runs ``authdns serve`` on it (one worker,
with the status page), and sends real mail to the pool: four senders, each behind its
own caching resolver (cli/senders.py: a TTL-honouring cache from its own /24, a sender
that shuffles equal preferences and falls back as RFC 5321 §5.1 says), five messages a
second each. Once a second it prints, per exchanger, the configured weight, its share
of DNS first positions (what the answers said) and its share of the mail the sinks
received (what happened). A third of the way in it stops mx2's sink and shows the mail
move away (at once: senders fall back) and mx2 leave the answers (after the health
check's failures); two thirds in it starts it again and shows both come back. At the end
it waits, bounded, for deferred messages, and says how many were sent, delivered, lost.
It ends by itself after ``--seconds`` (or on Ctrl-C) and stops everything it started,
by PID; nothing stays behind.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import heapq
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path

from authdns.cli.senders import CachingResolver, Delivery, deliver

ORIGIN = "demo.test"
POOL = f"pool.{ORIGIN}."
WEIGHTS = {"mx1": 3, "mx2": 1, "mx3": 1}
SINKS = {"mx1": "127.0.0.11", "mx2": "127.0.0.12", "mx3": "127.0.0.13"}
SENDERS = 4  # each behind its own resolver, from 127.0.N.1 (its own /24: its own rotation)
MESSAGES_PER_SECOND = 5  # per sender
DEFAULT_TTL = 1  # the pool's TTL: each resolver asks again every second
PROBE_INTERVAL = 0.5
RETRY_AFTER = 2.0  # a deferred message is tried again this long after (an MTA's queue, shortened)
DRAIN_TIMEOUT = 15.0  # at the end, how long deferred messages get to go out
START_TIMEOUT = 30.0
RECENT = 3.0  # seconds of the "now" share


class DemoError(Exception):
    """The demo cannot run; the message says why."""


def zone_text(port: int, ttl: int) -> str:
    pool = "".join(f"        - {{preference: 10, exchange: {name}, weight: {weight}, probe: '{SINKS[name]}:{port}'}}\n"
                   for name, weight in WEIGHTS.items())
    hosts = "".join(f"  {name}: {{A: {address}}}\n" for name, address in SINKS.items())
    return f"""# written by `authdns demo`
ttl: 30
checks:
  smtp: {{kind: smtp, port: {port}, interval: {PROBE_INTERVAL}, timeout: 1, rise: 2, fall: 2}}
records:
  "@":
    NS: ns1
  ns1: {{A: 127.0.0.1}}
  pool:
    MX:
      ttl: {ttl}
      policy: weighted
      promote: true
      check: smtp
      records:
{pool}{hosts}"""


class Sink:
    """One SMTP sink (aiosmtpd) that can be stopped and started on the same address;
    it records the Message-ID of every message it accepts."""

    def __init__(self, name: str, address: str, received: Counter[str], seen: set[str], lock: threading.Lock) -> None:
        self.name, self.address = name, address
        self.received, self.seen, self.lock = received, seen, lock
        self.port = 0
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        sink = self

        class Accept:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
                found = re.search(rb"Message-ID: <([^>]+)>", envelope.content or b"")
                with sink.lock:
                    sink.received[sink.name] += 1
                    if found:
                        sink.seen.add(found.group(1).decode())
                return "250 accepted by the demo"

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(Accept(), hostname=f"{self.name}.{ORIGIN}"),
                                               self.address, self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


class Tally:
    """Counts by exchanger over the whole run and over the last ``RECENT`` seconds."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.recent: deque[tuple[float, str]] = deque()

    def add(self, name: str, now: float) -> None:
        self.total[name] += 1
        self.recent.append((now, name))

    def shares(self, now: float) -> tuple[dict[str, float], dict[str, float]]:
        while self.recent and self.recent[0][0] < now - RECENT:
            self.recent.popleft()
        recent = Counter(name for _, name in self.recent)
        return _fractions(self.total), _fractions(recent)


def _fractions(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {name: counts[name] / total for name in WEIGHTS}


class Mail:
    """The senders' shared record: DNS first positions, deliveries, deferrals, refusals."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.lock = threading.Lock()
        self.first = Tally()  # the exchanger each fetched answer put first (promoted)
        self.answered: deque[tuple[float, frozenset[str]]] = deque(maxlen=64)  # the last answers' exchangers
        self.delivered = Tally()  # by the sink that accepted it
        self.received: Counter[str] = Counter()  # as the sinks counted them
        self.seen: set[str] = set()  # Message-IDs the sinks accepted
        self.sent = 0
        self.pending: dict[str, float] = {}  # deferred Message-ID -> since
        self.longest_deferral = 0.0
        self.refused: Counter[str] = Counter()
        self.last_refused: dict[str, float] = {}

    def now(self) -> float:
        return time.monotonic() - self.started


def _exchange_of(address: str) -> str:
    return next(name for name, sink in SINKS.items() if sink == address)


def _send_loop(index: int, dns_port: int, smtp_port: int, mail: Mail, stop: threading.Event,
               draining: threading.Event) -> None:
    """One sender behind its own resolver: MESSAGES_PER_SECOND new messages a second
    until ``stop``; a deferred one is tried again RETRY_AFTER later, until it goes or
    ``draining`` is set."""
    rng = random.Random(f"demo sender {index}")
    resolver = CachingResolver(("127.0.0.1", dns_port), time.monotonic, random.Random(f"demo resolver {index}"),
                               f"127.0.{index + 1}.1")
    queue: list[tuple[float, int, str]] = []  # heap of (when to try, order, Message-ID)
    number = 0
    next_new = time.monotonic()
    while not draining.is_set():
        clock = time.monotonic()
        if not stop.is_set() and clock >= next_new:
            heapq.heappush(queue, (clock, number, f"{index}.{number}@{ORIGIN}"))
            number += 1
            next_new += 1 / MESSAGES_PER_SECOND
            with mail.lock:
                mail.sent += 1
        elif queue and queue[0][0] <= clock:
            _, order, message_id = heapq.heappop(queue)
            delivery = deliver(resolver, POOL, smtp_port, rng, message_id)
            if delivery.accepted_by is None and not delivery.bounced:
                heapq.heappush(queue, (time.monotonic() + RETRY_AFTER, order, message_id))
            _record(mail, resolver, delivery, message_id)
        elif stop.is_set() and not queue:
            return
        else:
            wakes = ([] if stop.is_set() else [next_new]) + ([queue[0][0]] if queue else [])
            time.sleep(min(max(0.0, min(wakes, default=clock) - clock), 0.05))  # the senders' pace


def _record(mail: Mail, resolver: CachingResolver, delivery: Delivery, message_id: str) -> None:
    """What one message's delivery did: the answers its resolver fetched for it, the
    connections refused, where it went or that it waits."""
    now = mail.now()
    with mail.lock:
        for name, _, records in resolver.fetched:
            if name == POOL and records:
                best = min(records, key=lambda mx: mx.preference)
                mail.first.add(best.exchange.to_text().split(".")[0], now)
                mail.answered.append((now, frozenset(mx.exchange.to_text().split(".")[0] for mx in records)))
        resolver.fetched.clear()  # only new ones matter next time
        for address in delivery.refused:
            exchange = _exchange_of(address)
            mail.refused[exchange] += 1
            mail.last_refused[exchange] = now
        if delivery.accepted_by is None:
            since = mail.pending.setdefault(message_id, now)
            mail.longest_deferral = max(mail.longest_deferral, now - since)
        else:
            mail.delivered.add(_exchange_of(delivery.accepted_by), now)
            since = mail.pending.pop(message_id, None)
            if since is not None:
                mail.longest_deferral = max(mail.longest_deferral, now - since)


async def run_demo(seconds: float, ttl: int = DEFAULT_TTL, out=sys.stdout) -> int:
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        raise DemoError("the demo needs aiosmtpd: pip install 'authdns[demo]'") from None
    work = Path(tempfile.mkdtemp(prefix="authdns-demo-"))
    mail = Mail(time.monotonic())
    sinks = {name: Sink(name, address, mail.received, mail.seen, mail.lock) for name, address in SINKS.items()}
    server: subprocess.Popen | None = None
    stop, draining = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    try:
        smtp_port = await _start_sinks(sinks)
        (work / "zones").mkdir()
        (work / "zones" / f"{ORIGIN}.yaml").write_text(zone_text(smtp_port, ttl))
        print("SMTP sinks: " + ", ".join(f"{name} {sink.address}:{smtp_port}" for name, sink in sinks.items()),
              file=out)
        server, port, page = await _start_server(work)
        print(f"authdns pid {server.pid} answers on 127.0.0.1:{port}; status page {page}", file=out)
        print(f"{POOL} MX: weighted {':'.join(map(str, WEIGHTS.values()))}, promote, TTL {ttl} s; {SENDERS} senders "
              f"behind their own caching resolvers, {MESSAGES_PER_SECOND} messages a second each, for {seconds:g} s; "
              f"mx2's sink stops at {seconds / 3:.0f} s and starts again at {2 * seconds / 3:.0f} s", file=out)
        mail.started = time.monotonic()
        for index in range(SENDERS):
            thread = threading.Thread(target=_send_loop, args=(index, port, smtp_port, mail, stop, draining),
                                      name=f"demo sender {index}", daemon=True)
            thread.start()
            threads.append(thread)
        await _watch(seconds, sinks, mail, out)
        stop.set()
        await _drain(threads, draining)
        _summary(mail, out)
        return 0
    finally:
        stop.set()
        draining.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 10)  # a sender ends after the message it is sending
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(server.wait, 15)
            except subprocess.TimeoutExpired:
                server.kill()
                await asyncio.to_thread(server.wait)
        for sink in sinks.values():
            await sink.stop()
        shutil.rmtree(work, ignore_errors=True)
        print("stopped: server, sinks and the demo's files are gone", file=out)


async def _start_sinks(sinks: dict[str, Sink]) -> int:
    """All three on one port (a free one on the first address, tried on the others)."""
    for _ in range(20):
        first, *others = sinks.values()
        first.port = 0
        await first.start()
        try:
            for sink in others:
                sink.port = first.port
                await sink.start()
            return first.port
        except OSError:
            for sink in sinks.values():
                await sink.stop()
    raise DemoError("no port free on 127.0.0.11-13 for the SMTP sinks")


async def _start_server(work: Path) -> tuple[subprocess.Popen, int, str]:
    command = [sys.executable, "-m", "authdns", "serve", "--zones", str(work / "zones"), "--listen", "127.0.0.1:0",
               "--state-dir", str(work / "state"), "--workers", "1", "--metrics", "127.0.0.1:0", "--no-watch"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
    page = port = None
    deadline = time.monotonic() + START_TIMEOUT
    while port is None:
        line = await asyncio.wait_for(asyncio.to_thread(server.stderr.readline), max(0.1, deadline - time.monotonic()))
        if not line:
            raise DemoError(f"the server exited (status {server.wait()}) before it was ready")
        if found := re.search(r"metrics and status page (\S+)", line):
            page = found.group(1)
        if found := re.search(r"\bready port=(\d+)", line):
            port = int(found.group(1))
    # Keep reading its log so the pipe never fills; the demo shows what matters itself.
    asyncio.get_running_loop().run_in_executor(None, _read_all, server)
    return server, port, page or "-"


def _read_all(server: subprocess.Popen) -> None:
    for _ in server.stderr:
        pass


async def _watch(seconds: float, sinks: dict[str, Sink], mail: Mail, out) -> None:
    """Once a second the shares; the failover of mx2 as it happens."""
    phase = "up"
    stopped_at = restarted_at = 0.0
    left = back_in_answers = back_in_mail = False
    next_report = 1.0
    while (elapsed := mail.now()) < seconds:
        if phase == "up" and elapsed >= seconds / 3:
            await sinks["mx2"].stop()
            phase, stopped_at = "stopped", mail.now()
            print(f"[{stopped_at:5.1f}s] mx2's SMTP sink stopped", file=out)
        elif phase == "stopped" and elapsed >= 2 * seconds / 3:
            await sinks["mx2"].start()
            phase, restarted_at = "restarted", mail.now()
            print(f"[{restarted_at:5.1f}s] mx2's SMTP sink started again", file=out)
        with mail.lock:
            if phase == "stopped" and not left and any(
                    when > stopped_at and "mx2" not in exchanges for when, exchanges in mail.answered):
                left = True
                print(f"[{elapsed:5.1f}s] mx2 left the answers, {elapsed - stopped_at:.1f} s after its sink stopped "
                      f"(its check's failures); meanwhile senders fell back: mx2 refused {mail.refused['mx2']} "
                      f"connections, {len(mail.pending)} messages waiting", file=out)
            if phase == "restarted" and not back_in_answers and any(
                    when > restarted_at and "mx2" in exchanges for when, exchanges in mail.answered):
                back_in_answers = True
                print(f"[{elapsed:5.1f}s] mx2 is back in the answers, {elapsed - restarted_at:.1f} s after its "
                      f"sink started", file=out)
            if phase == "restarted" and not back_in_mail and any(
                    when > restarted_at and name == "mx2" for when, name in mail.delivered.recent):
                back_in_mail = True
                print(f"[{elapsed:5.1f}s] mx2 receives mail again, {elapsed - restarted_at:.1f} s after its "
                      f"sink started", file=out)
            if elapsed >= next_report:
                next_report += 1.0
                print(_report_line(mail, elapsed), file=out, flush=True)
        await asyncio.sleep(0.05)  # the report's pace, not a synchronisation


def _report_line(mail: Mail, now: float) -> str:
    first, _ = mail.first.shares(now)
    delivered, recent = mail.delivered.shares(now)
    parts = [f"{name} w{weight}: DNS first {first[name]:4.0%}  mail {delivered[name]:4.0%} (now {recent[name]:4.0%})"
             for name, weight in WEIGHTS.items()]
    return f"[{now:5.1f}s] " + " | ".join(parts) + f" | deferred {len(mail.pending)}"


async def _drain(threads: list[threading.Thread], draining: threading.Event) -> None:
    """New messages have stopped: let the senders' deferred ones go, bounded."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    for thread in threads:
        await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
    draining.set()


def _summary(mail: Mail, out) -> None:
    with mail.lock:
        delivered = sum(mail.delivered.total.values())
        received = sum(mail.received.values())
        lost = mail.sent - len(mail.seen) - len(mail.pending)
        target = "/".join(f"{100 * w / sum(WEIGHTS.values()):.0f}" for w in WEIGHTS.values())
        shares = "/".join(f"{100 * mail.delivered.total[name] / (delivered or 1):.0f}" for name in WEIGHTS)
        print(f"total: sent {mail.sent}, delivered {delivered} (sinks received {received}, duplicates "
              f"{received - len(mail.seen)}), still deferred {len(mail.pending)}, lost {lost}; longest deferral "
              f"{mail.longest_deferral:.1f} s; delivered shares mx1/mx2/mx3 {shares} % (weights give {target}); "
              f"DNS first places {dict(mail.first.total)}", file=out)


def main(seconds: float, ttl: int = DEFAULT_TTL) -> int:
    try:
        return asyncio.run(run_demo(seconds, ttl))
    except DemoError as error:
        print(f"authdns demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0  # run_demo's cleanup ran as the interrupt unwound it

