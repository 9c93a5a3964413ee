"""Helpers shared by the integration and reference tests: raw UDP/TCP exchanges with
deadlines, the listen addresses a server logged, and zone files written as YAML text. No fixtures here
start or stop processes; that stays in ``tests/conftest.py``."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.renderer
import dns.rrset
import dns.tsig

from authdns.zones.loader import load_zone_file
from authdns.zones.zone import Zone
from conftest import ServerProcess, wait_until

# ---------------------------------------------------------------- other people's servers


def find_program(name: str) -> str | None:
    """An installed server's binary: on PATH, else in /usr/sbin (not on a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    return f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None


@dataclass
class ExternalServer:
    """NSD, Knot or another server the tests started, and the log file it writes."""

    process: subprocess.Popen
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ---------------------------------------------------------------- addresses


def listening_addresses(server: ServerProcess, count: int = 1, timeout: float = 5.0) -> list[tuple[str, int]]:
    """The ``listening udp+tcp ADDR:PORT`` lines of a server's log, as (host, port)."""

    def addresses() -> list[tuple[str, int]] | None:
        found = []
        for line in list(server.log):
            match = re.search(r"listening udp\+tcp (?:\[([0-9a-fA-F:]+)\]|([0-9.]+)):(\d+)", line)
            if match:
                found.append((match.group(1) or match.group(2), int(match.group(3))))
        return found if len(found) >= count else None

    addresses.__name__ = f"{count} 'listening' log line(s)"
    return wait_until(addresses, timeout)


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# ---------------------------------------------------------------- raw UDP


def udp_exchange(host: str, port: int, packet: bytes, timeout: float = 2.0) -> bytes:
    """Send one datagram and return the first reply (raises socket.timeout if none)."""
    with socket.socket(family(host), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (host, port))
        data, _ = sock.recvfrom(65535)
        return data


def udp_replies_until(
    sock: socket.socket, sentinel_id: int, timeout: float = 2.0, limit: int = 16
) -> tuple[list[bytes], bytes]:
    """Read datagrams until one carries ``sentinel_id``; return (the others, the sentinel's).

    Bounded by ``timeout`` overall and by ``limit`` datagrams."""
    others: list[bytes] = []
    deadline = time.monotonic() + timeout
    for _ in range(limit):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        data, _ = sock.recvfrom(65535)
        if len(data) >= 2 and struct.unpack_from("!H", data)[0] == sentinel_id:
            return others, data
        others.append(data)
    raise AssertionError(f"no reply with ID {sentinel_id} within {timeout}s; got {len(others)} other(s)")


# ---------------------------------------------------------------- raw TCP


class Flood(NamedTuple):
    """What ``udp_flood`` saw: queries sent, full and truncated (TC) replies, and the
    seconds from the first query sent to the last reply read (the server's checks all
    fall inside them)."""

    sent: int
    full: int
    truncated: int
    elapsed: float


def udp_flood(source: str, port: int, seconds: float, gap: float,
              name: Callable[[int], str] = lambda _: "example.test", rdtype: str = "MX",
              sockets: int = 1, host: str = "127.0.0.1") -> Flood:
    """Send queries for ``name(n)`` from ``source`` for ``seconds``, one every ``gap``
    seconds, in turn from ``sockets`` source ports (several: the kernel's SO_REUSEPORT
    hash spreads them over a server's workers); bounded in time, stragglers read for at
    most a second more."""
    full = truncated = sent = 0
    last_reply = started = time.monotonic()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    try:
        for sock in socks:
            sock.bind((source, 0))
            sock.setblocking(False)

        def collect() -> None:
            nonlocal full, truncated, last_reply
            for sock in socks:
                while True:
                    try:
                        reply = sock.recv(4096)
                    except BlockingIOError:
                        break
                    last_reply = time.monotonic()
                    if reply[2] & 0x02:
                        truncated += 1
                    else:
                        full += 1

        started = time.monotonic()
        while time.monotonic() - started < seconds:
            socks[sent % sockets].sendto(dns.message.make_query(name(sent), rdtype).to_wire(), (host, port))
            sent += 1
            time.sleep(gap)  # the flood's pace
            collect()
        deadline = time.monotonic() + 1.0
        while full + truncated < sent and time.monotonic() < deadline:
            time.sleep(0.01)  # the last answers in flight, bounded
            collect()
    finally:
        for sock in socks:
            sock.close()
    return Flood(sent, full, truncated, last_reply - started)


def tcp_connect(host: str, port: int, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def frame(packet: bytes) -> bytes:
    """RFC 1035 §4.2.2 / RFC 7766 §8: a two-octet length, then the message."""
    return struct.pack("!H", len(packet)) + packet


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    """Exactly ``count`` bytes, or b"" if the peer closed first (the socket's timeout bounds each read)."""
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            return b""
        chunks += chunk
    return bytes(chunks)


def tcp_read_message(sock: socket.socket) -> bytes:
    """One framed message; b"" when the server closed the connection."""
    prefix = recv_exactly(sock, 2)
    if not prefix:
        return b""
    (length,) = struct.unpack("!H", prefix)
    body = recv_exactly(sock, length)
    assert len(body) == length, "connection closed in the middle of a framed message"
    return body


def tcp_exchange(sock: socket.socket, packet: bytes) -> bytes:
    sock.sendall(frame(packet))
    reply = tcp_read_message(sock)
    assert reply, "server closed the TCP connection instead of answering"
    return reply


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the next read sees EOF or a reset (the socket timeout bounds the wait)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------- packets


def exchanges(server: ServerProcess, qname: str) -> list[str]:
    """The first label of each exchange in the MX answer to ``qname``, in answer order."""
    reply = server.query(qname, "MX")
    return [rdata.exchange.labels[0].decode() for rrset in reply.answer for rdata in rrset]


def query_wire(qname: str, qtype: str = "A", ident: int | None = None, rd: bool = False, **kwargs) -> bytes:
    message = dns.message.make_query(qname, qtype, **kwargs)
    if ident is not None:
        message.id = ident
    if not rd:
        message.flags &= ~dns.flags.RD
    return message.to_wire()


def header(packet: bytes) -> tuple[int, int, int, int, int, int]:
    """(id, flags, qdcount, ancount, nscount, arcount)."""
    return struct.unpack_from("!HHHHHH", packet)


def question_bytes(packet: bytes) -> bytes:
    """The question section's raw bytes exactly as sent (case included): every question
    QDCOUNT announces, b"" when there is none. A compression pointer ends a name."""
    (qdcount,) = struct.unpack_from("!H", packet, 4)
    offset = 12
    for _ in range(qdcount):
        while packet[offset]:
            if packet[offset] & 0xC0:
                offset += 1
                break
            offset += packet[offset] + 1
        offset += 1 + 4  # the terminating octet (or pointer's second), then type and class
    return packet[12:offset]


# ---------------------------------------------------------------- zone files


def write_zone(zone_dir: Path, origin: str, text: str) -> Path:
    """Write ``<origin>.yaml`` into ``zone_dir`` (created if needed)."""
    zone_dir.mkdir(parents=True, exist_ok=True)
    path = zone_dir / f"{origin}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_text(zone_dir: Path, origin: str, text: str) -> tuple[Path, Zone | None, list[str]]:
    """Write ``text`` as ``<origin>.yaml`` and load it as the server would: the path, the
    zone (None when it does not load) and every problem as ``file:line:column: ...``."""
    path = write_zone(zone_dir, origin, text)
    zone, problems = load_zone_file(path)
    return path, zone, [str(problem) for problem in problems]


BIG_TXT_COUNT = 40
BIG_A_COUNT = 60
REFERRAL_NS_COUNT = 12
MANY_MX_COUNT = 16


def big_zone_text() -> str:
    """``big.test``: RRsets that do not fit 512 octets (and one that does not fit 1232),
    a referral whose in-domain glue does not fit 512, and an MX RRset whose additional
    addresses do not fit."""
    lines = [
        "ttl: 300",
        "records:",
        '  "@":',
        "    SOA: {rname: hostmaster}",
        "    NS: [ns1]",
        "  ns1: {A: 192.0.2.1}",
        "  txt:",
        "    TXT:",
    ]
    lines += [f'      - "record-{i:02d}-{"x" * 40}"' for i in range(BIG_TXT_COUNT)]
    lines.append("  many:")
    lines.append("    A: [" + ", ".join(f"198.51.100.{i}" for i in range(1, BIG_A_COUNT + 1)) + "]")
    lines.append("  deleg:")
    lines.append("    NS: [" + ", ".join(f"ns{i}.deleg" for i in range(REFERRAL_NS_COUNT)) + "]")
    for i in range(REFERRAL_NS_COUNT):
        lines.append(f'  ns{i}.deleg: {{A: 192.0.2.{100 + i}, AAAA: "2001:db8::{100 + i:x}"}}')
    lines.append("  mxhost:")
    lines.append("    MX: [" + ", ".join(f'"10 exchanger{i}"' for i in range(MANY_MX_COUNT)) + "]")
    for i in range(MANY_MX_COUNT):
        lines.append(f'  exchanger{i}: {{A: 203.0.113.{i + 1}, AAAA: "2001:db8:1::{i + 1:x}"}}')
    return "\n".join(lines) + "\n"


PROBE_INTERVAL = 0.2  # seconds, in probed_pool_zone()'s health check


def probed_pool_zone(ports: list[int], serial: int = 1) -> str:
    """A zone whose ``pool`` MX (mx1, mx2, ... round robin) is health-checked on the SMTP
    listeners at ``ports`` (127.0.0.1), probed every PROBE_INTERVAL, rise and fall 1."""
    members = "".join(f"        - {{preference: 10, exchange: mx{index + 1}, probe: '127.0.0.1:{port}'}}\n"
                      for index, port in enumerate(ports))
    hosts = "".join(f"  mx{index + 1}: {{A: 192.0.2.{11 + index}}}\n" for index in range(len(ports)))
    return f"""
ttl: 30
checks:
  smtp: {{kind: smtp, interval: {PROBE_INTERVAL}, timeout: 0.5, rise: 1, fall: 1}}
records:
  "@":
    SOA: {{serial: {serial}}}
    NS: ns1
  ns1: {{A: 192.0.2.1}}
  pool:
    MX:
      check: smtp
      records:
{members}{hosts}"""


def free_port() -> int:
    """A loopback port free for both UDP and TCP at the time of asking."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no loopback port free for both UDP and TCP")


# ---------------------------------------------------------------- TSIG by hand


def signed_wire(key: dns.tsig.Key, qname: str, rdtype: int, *, time_signed: int | None = None, fudge: int = 300,
                mac: Callable[[bytes], bytes] | None = None, query_id: int = 4321, flags: int = 0) -> tuple[bytes, bytes]:
    """A query signed by hand (dnspython's ``use_tsig`` takes neither a time nor a
    MAC): any time, fudge and header flags, and ``mac`` to change the MAC after signing
    (cut it, pad it, spoil it). The wire and the MAC as sent."""
    renderer = dns.renderer.Renderer(id=query_id, flags=flags)
    renderer.add_question(dns.name.from_text(qname), rdtype)
    renderer.write_header()
    unsigned = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, fudge, b"",
                                         query_id, 0, b"")
    when = int(time.time()) if time_signed is None else time_signed
    tsig, _ = dns.tsig.sign(renderer.get_wire(), key, unsigned, when, b"")
    if mac is not None:
        tsig = tsig.replace(mac=mac(tsig.mac))
    body = renderer.get_wire()
    record = io.BytesIO()
    dns.rrset.from_rdata(key.name, 0, tsig).to_wire(record)
    return body[:10] + struct.pack("!H", 1) + body[12:] + record.getvalue(), tsig.mac
