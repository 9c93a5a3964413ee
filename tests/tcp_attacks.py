"""Hostile TCP clients and the probes that measure what they do to others, shared by
tests/integration/test_tcp_pressure.py and bench/tcp_pressure.py (issue 15, items 7 and 9).

Every attacker binds a loopback source (127.0.1.N: distinct addresses, so per-address
caps do not stop them) and is bounded in count and time; the caller closes what it gets.
Nothing here starts a server or imports pytest, so the bench script can use it too.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import dns.message
import dns.query


def sources(count: int, subnet: str = "127.0.1") -> list[str]:
    """``count`` loopback addresses, subnet.1 to subnet.count (every 127/8 address is local)."""
    return [f"{subnet}.{index}" for index in range(1, count + 1)]


def descriptor_room() -> int:
    """File descriptors this process may still open (soft limit, raised to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft - len(os.listdir("/proc/self/fd"))


def frame(packet: bytes) -> bytes:
    return struct.pack("!H", len(packet)) + packet


def query_frame(qname: str = "example.test", rdtype: str = "SOA", ident: int = 1) -> bytes:
    message = dns.message.make_query(qname, rdtype)
    message.id = ident
    return frame(message.to_wire())


def connect_from(source: str, host: str, port: int, timeout: float = 2.0) -> socket.socket | None:
    """A connected TCP socket from ``source``, or None when the server would not have it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def open_idle(host: str, port: int, addresses: list[str], per_address: int) -> list[socket.socket]:
    """``per_address`` connections from each address that then send nothing (RFC 7766 §6.2.3
    idle clients). The kernel accepts them into the backlog even where the server closes
    them a moment later: the caller sees what the server did by what its probes get."""
    opened: list[socket.socket] = []
    for _ in range(per_address):
        for source in addresses:
            sock = connect_from(source, host, port)
            if sock is not None:
                opened.append(sock)
    return opened


def trickle(socks: list[socket.socket], rounds: int, gap: float, stop: threading.Event) -> None:
    """Send one byte of a query on every socket each ``gap`` seconds, ``rounds`` times: a
    message that never finishes arriving (slowloris). Sockets the server closed are skipped."""
    payload = query_frame()
    for index in range(rounds):
        if stop.wait(gap):
            return
        byte = payload[index % len(payload):index % len(payload) + 1]
        for sock in socks:
            try:
                sock.send(byte, socket.MSG_DONTWAIT)
            except OSError:
                pass  # closed by the server, or its buffer full: either is the server's right


@dataclass
class Flood:
    """Pipelining clients that write queries as fast as the server takes them and never read
    an answer. ``sent``: queries written; ``closed``: connections the server ended."""

    socks: list[socket.socket]
    sent: int = 0
    closed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self, seconds: float) -> None:
        batch = query_frame() * 512  # ~17 KiB of pipelined queries per send
        live = list(self.socks)
        for sock in live:
            sock.setblocking(False)
        deadline = time.monotonic() + seconds
        while live and time.monotonic() < deadline and not self.stop.is_set():
            progressed = False
            for sock in list(live):
                try:
                    written = sock.send(batch)
                except BlockingIOError:
                    continue  # the server is not reading it: what a bound should do
                except OSError:
                    live.remove(sock)
                    self.closed += 1
                    continue
                self.sent += written // (len(batch) // 512)
                progressed = True
            if not progressed:
                self.stop.wait(0.02)  # everything blocked: look again shortly, bounded by the deadline

    def start(self, seconds: float) -> None:
        self.thread = threading.Thread(target=self.run, args=(seconds,), daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)
        for sock in self.socks:
            sock.close()


def flood(host: str, port: int, addresses: list[str], per_address: int) -> Flood:
    return Flood(open_idle(host, port, addresses, per_address))


@dataclass
class Probes:
    """What well-behaved clients got while an attack ran."""

    udp_sent: int = 0
    udp_answered: int = 0
    udp_slowest: float = 0.0
    tcp_sent: int = 0
    tcp_answered: int = 0
    tcp_slowest: float = 0.0
    udp_times: list[float] = field(default_factory=list)  # seconds, answered UDP queries

    def udp_percentile(self, share: float) -> float:
        times = sorted(self.udp_times)
        return times[min(len(times) - 1, int(len(times) * share))] if times else float("nan")

    def line(self) -> str:
        return (f"UDP {self.udp_answered}/{self.udp_sent} answered (slowest {self.udp_slowest * 1000:.0f} ms), "
                f"new TCP {self.tcp_answered}/{self.tcp_sent} (slowest {self.tcp_slowest * 1000:.0f} ms)")


def probe_udp(probes: Probes, host: str, port: int, source: str, timeout: float) -> None:
    query = dns.message.make_query("example.test", "SOA")
    probes.udp_sent += 1
    started = time.monotonic()
    try:
        dns.query.udp(query, host, port=port, timeout=timeout, source=source)
    except Exception:
        probes.udp_slowest = max(probes.udp_slowest, timeout)
        return
    probes.udp_answered += 1
    elapsed = time.monotonic() - started
    probes.udp_times.append(elapsed)
    probes.udp_slowest = max(probes.udp_slowest, elapsed)


def probe_tcp(probes: Probes, host: str, port: int, source: str, timeout: float) -> None:
    """One query on a new connection, as a resolver falling back to TCP does."""
    query = dns.message.make_query("example.test", "SOA")
    probes.tcp_sent += 1
    started = time.monotonic()
    try:
        dns.query.tcp(query, host, port=port, timeout=timeout, source=source)
    except Exception:
        probes.tcp_slowest = max(probes.tcp_slowest, timeout)
        return
    probes.tcp_answered += 1
    probes.tcp_slowest = max(probes.tcp_slowest, time.monotonic() - started)


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (a supervisor's workers), from /proc."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{candidate}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise
    return found
