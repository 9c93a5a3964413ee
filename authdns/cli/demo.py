"""``authdns demo``: DNS-side mail load balancing, shown live on loopback.

It starts three SMTP listeners (aiosmtpd, the ``demo`` extra) on 127.0.0.1, writes a
zone whose MX pool (round robin) and multihomed ``smtp`` host (weighted 3:1) point at
them with health checks, runs ``authdns serve`` on it (one worker, so rotation is exact,
with the status page), and asks for the MX and the A records a few dozen times a second
with dnspython. Once a second it prints who came first and the running shares. A third
of the way in it stops mx2's listener and shows mx2 leave the answers; two thirds in it
starts it again and shows it return. It ends by itself after ``--seconds`` (or on
Ctrl-C) and stops everything it started, by PID; nothing stays behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rdatatype

ORIGIN = "demo.test"
EXCHANGES = ("mx1", "mx2", "mx3")
ADDRESSES = {"mx1": "192.0.2.21", "mx3": "192.0.2.23"}  # smtp.demo.test A: weighted 3:1
QUERIES_PER_SECOND = 40
PROBE_INTERVAL = 0.5
START_TIMEOUT = 30.0


class DemoError(Exception):
    """The demo cannot run; the message says why."""


def zone_text(ports: dict[str, int]) -> str:
    pool = "".join(f"        - {{preference: 10, exchange: {name}, probe: '127.0.0.1:{ports[name]}'}}\n"
                   for name in EXCHANGES)
    weights = {"mx1": 3, "mx3": 1}
    smtp = "".join(f"        - {{address: {address}, weight: {weights[name]}, probe: '127.0.0.1:{ports[name]}'}}\n"
                   for name, address in ADDRESSES.items())
    hosts = "".join(f"  {name}: {{A: 192.0.2.{11 + index}}}\n" for index, name in enumerate(EXCHANGES))
    return f"""# written by `authdns demo`
ttl: 30
checks:
  smtp: {{kind: smtp, interval: {PROBE_INTERVAL}, timeout: 1, rise: 2, fall: 2}}
records:
  "@":
    NS: ns1
    MX:
      check: smtp
      records:
{pool}  ns1: {{A: 192.0.2.1}}
  smtp:
    A:
      policy: weighted
      check: smtp
      records:
{smtp}{hosts}"""


class Listener:
    """One SMTP listener (aiosmtpd) that can be stopped and started on the same port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        class Accept:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
                return "250 accepted by the demo"

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(Accept(), hostname=f"{self.name}.{ORIGIN}"),
                                               "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


class Tally:
    """First places over the whole run and over the last few seconds."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.recent: deque[tuple[float, str]] = deque()

    def add(self, first: str, now: float, window: float = 3.0) -> None:
        self.total[first] += 1
        self.recent.append((now, first))
        while self.recent and self.recent[0][0] < now - window:
            self.recent.popleft()

    def recent_counts(self) -> Counter[str]:
        return Counter(first for _, first in self.recent)

    def line(self, names: list[str]) -> str:
        count = sum(self.total.values()) or 1
        recent = self.recent_counts()
        recent_count = sum(recent.values()) or 1
        return "  ".join(f"{name} {self.total[name] / count:5.1%} (now {recent[name] / recent_count:4.0%})"
                         for name in names)


async def run_demo(seconds: float, out=sys.stdout) -> int:
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        raise DemoError("the demo needs aiosmtpd: pip install 'authdns[demo]'") from None
    work = Path(tempfile.mkdtemp(prefix="authdns-demo-"))
    listeners = {name: Listener(name) for name in EXCHANGES}
    server: subprocess.Popen | None = None
    try:
        for listener in listeners.values():
            await listener.start()
        (work / "zones").mkdir()
        (work / "zones" / f"{ORIGIN}.yaml").write_text(zone_text({n: l.port for n, l in listeners.items()}))
        print("SMTP listeners: " + ", ".join(f"{n} 127.0.0.1:{l.port}" for n, l in listeners.items()), file=out)
        server, port, page = await _start_server(work)
        print(f"authdns pid {server.pid} answers on 127.0.0.1:{port}; status page {page}", file=out)
        print(f"asking {ORIGIN} MX and smtp.{ORIGIN} A {QUERIES_PER_SECOND} times a second for {seconds:g} s; "
              f"mx2's listener stops at {seconds / 3:.0f} s and starts again at {2 * seconds / 3:.0f} s", file=out)
        await _ask(port, seconds, listeners, out)
        return 0
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(server.wait, 15)
            except subprocess.TimeoutExpired:
                server.kill()
                await asyncio.to_thread(server.wait)
        for listener in listeners.values():
            await listener.stop()
        shutil.rmtree(work, ignore_errors=True)
        print("stopped: server, listeners and the demo's files are gone", file=out)


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
    asyncio.get_running_loop().run_in_executor(None, _drain, server)
    return server, port, page or "-"


def _drain(server: subprocess.Popen) -> None:
    for _ in server.stderr:
        pass


async def _ask(port: int, seconds: float, listeners: dict[str, Listener], out) -> None:
    mx, hosts = Tally(), Tally()
    started = time.monotonic()
    phase, left_at, stopped_at, restarted_at = "up", None, None, None
    next_report = 1.0
    while (elapsed := time.monotonic() - started) < seconds:
        if phase == "up" and elapsed >= seconds / 3:
            await listeners["mx2"].stop()
            phase, stopped_at = "stopped", elapsed
            print(f"[{elapsed:5.1f}s] mx2's SMTP listener stopped", file=out)
        elif phase == "stopped" and elapsed >= 2 * seconds / 3:
            await listeners["mx2"].start()
            phase, restarted_at = "restarted", elapsed
            print(f"[{elapsed:5.1f}s] mx2's SMTP listener started again", file=out)
        exchanges, first_address = await _query(port)
        now = time.monotonic() - started
        mx.add(exchanges[0], now)
        hosts.add(first_address, now)
        if phase == "stopped" and left_at is None and "mx2" not in exchanges:
            left_at = now
            print(f"[{now:5.1f}s] mx2 left the answers, {now - stopped_at:.1f} s after its listener stopped", file=out)
        if phase == "restarted" and "mx2" in exchanges and restarted_at is not None:
            print(f"[{now:5.1f}s] mx2 is back in the answers, {now - restarted_at:.1f} s after its listener "
                  f"started", file=out)
            restarted_at, phase = None, "back"
        if now >= next_report:
            next_report += 1.0
            print(f"[{now:5.1f}s] MX first: {mx.line(list(EXCHANGES))}", file=out)
            print(f"         smtp A first: {hosts.line(list(ADDRESSES.values()))}", file=out, flush=True)
        await asyncio.sleep(1 / QUERIES_PER_SECOND)  # the demo's pace, not a synchronisation
    print(f"total first places: MX {dict(mx.total)}; smtp A {dict(hosts.total)}", file=out)


async def _query(port: int) -> tuple[list[str], str]:
    mx = await dns.asyncquery.udp(dns.message.make_query(ORIGIN, "MX"), "127.0.0.1", port=port, timeout=2)
    address = await dns.asyncquery.udp(dns.message.make_query(f"smtp.{ORIGIN}", "A"), "127.0.0.1", port=port,
                                       timeout=2)
    exchanges = [record.exchange.to_text().split(".")[0] for record in mx.answer[0]] if mx.answer else ["-"]
    first = address.answer[0][0].address if address.answer else "-"
    return exchanges, first


def main(seconds: float) -> int:
    try:
        return asyncio.run(run_demo(seconds))
    except DemoError as error:
        print(f"authdns demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0  # run_demo's cleanup ran as the interrupt unwound it
