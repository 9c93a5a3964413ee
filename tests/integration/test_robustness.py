"""Hostile traffic and hostile files against a real server (issue 7).

Checks, with the figures printed (-s):
* response rate limiting: a flood from one loopback source gets the configured rate
  (a second's burst, then RATE a second), half of the rest truncated (slip 2), the rest
  dropped; a source in another /24 at the same time is not limited at all; random names
  under one delegation or one wildcard count as one response;
* slowloris: 300 idle and trickling TCP connections from one address; meanwhile a UDP
  client and a well-behaved TCP client on other addresses get every answer within 100 ms;
* hostile zone files (too big, an absurd RRset, a billion-laughs alias, a label over 63
  octets, a name over 255) are each refused with their exact ``file:line:column``, and
  the zone being served stays at its serial;
* the control socket refuses users other than the server's own (and root).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import ServerProcess, start_server, stop_server, wait_until
from support import Flood, udp_flood, write_zone

RATE = 50
FLOOD_SECONDS = 2.0


@pytest.mark.slow
def test_rate_limiting_limits_one_source_not_another(zone_dir: Path) -> None:
    server = start_server(zone_dir, "--rrl-rate", str(RATE), "--rrl-slip", "2")
    try:
        results: dict[str, Flood] = {}
        other = threading.Thread(target=lambda: results.update(other=udp_flood("127.0.1.3", server.port, 1.5, 0.05)))
        other.start()
        results["flood"] = udp_flood("127.0.0.2", server.port, FLOOD_SECONDS, 0.0005)
        other.join(timeout=10)
        sent, full, truncated = results["flood"][:3]
        print(f"\nflood: sent {sent}, answered {full}, truncated {truncated}, dropped {sent - full - truncated}; "
              f"limit {RATE}/s over {FLOOD_SECONDS:g} s")
        assert sent > 10 * RATE * FLOOD_SECONDS, "the flood must exceed the limit by far"
        assert RATE * FLOOD_SECONDS * 0.8 <= full <= RATE * (FLOOD_SECONDS + 1) + 5
        limited = sent - full
        assert abs(truncated - limited / 2) <= 0.05 * limited + 5, (truncated, limited)
        other_sent, other_full, other_truncated = results["other"][:3]
        assert other_full == other_sent and other_truncated == 0, results["other"]
    finally:
        stop_server(server.process)


@pytest.mark.slow
@pytest.mark.parametrize(("under", "rdtype"), [("lab.example.test", "A"), ("users.example.test", "A"),
                                               ("users.example.test", "TXT")],
                         ids=["referrals", "wildcard answers", "wildcard NODATA"])
def test_random_names_under_one_delegation_or_wildcard_share_a_bucket(zone_dir: Path, under: str,
                                                                      rdtype: str) -> None:
    """Random names below a delegation (a referral each) or a wildcard (a synthesized
    answer each) are "the same response" to RRL, as in BIND and NSD: counted by the
    delegation point or the wildcard, not by name, or each name would open a bucket of
    its own and a spoofed flood of random names would never be limited."""
    server = start_server(zone_dir, "--rrl-rate", str(RATE), "--rrl-slip", "2")
    try:
        sent, full, truncated = udp_flood("127.0.0.2", server.port, FLOOD_SECONDS, 0.0005,
                                          name=lambda n: f"r{n}x{os.getpid()}.{under}", rdtype=rdtype)[:3]
        print(f"\nrandom names under {under}: sent {sent}, answered {full}, truncated {truncated}")
        assert sent > 10 * RATE * FLOOD_SECONDS, "the flood must exceed the limit by far"
        assert full <= RATE * (FLOOD_SECONDS + 1) + 5, (sent, full, truncated)
        assert truncated > 0  # slip 2: half the limited ones go out truncated
    finally:
        stop_server(server.process)


def test_slowloris_does_not_starve_others(zone_dir: Path) -> None:
    server = start_server(zone_dir)  # defaults: 1024 connections, 32 per address
    attackers: list[socket.socket] = []
    try:
        for index in range(300):
            try:
                sock = socket.create_connection((server.host, server.port), timeout=2)
            except OSError:
                continue  # refused under the caps: what they are for
            if index % 2:
                sock.sendall(b"\x00")  # half a length prefix: a query that never arrives
            attackers.append(sock)
        slowest = 0.0
        query = dns.message.make_query("example.test", "SOA")
        for round_ in range(20):
            for sock in attackers[1::7]:
                try:
                    sock.send(b"\x00")  # trickle
                except OSError:
                    pass  # closed by the server: fine
            started = time.monotonic()
            reply = dns.query.udp(query, server.host, port=server.port, timeout=1, source="127.0.0.3")
            udp_time = time.monotonic() - started
            started = time.monotonic()
            reply_tcp = dns.query.tcp(query, server.host, port=server.port, timeout=1, source="127.0.0.2")
            tcp_time = time.monotonic() - started
            assert reply.rcode() == reply_tcp.rcode() == dns.rcode.NOERROR
            slowest = max(slowest, udp_time, tcp_time)
        print(f"\nslowloris: {len(attackers)} connections opened (those over the caps closed by the server); slowest answer to others {slowest * 1000:.1f} ms")
        assert slowest < 0.1
    finally:
        for sock in attackers:
            sock.close()
        stop_server(server.process)


VALID = """ttl: 300
records:
  "@": {SOA: {serial: %d}, NS: ns1}
  ns1: {A: 192.0.2.1}
"""

HOSTILE = {
    "too big": (VALID % 9 + "# " + "x" * 70_000 + "\n", "{path}:1:1: file is {size:,} octets, over the limit of "
                "65,536 (--max-zone-size)"),
    "absurd RRset": (VALID % 9 + "  many: {A: [" + ", ".join(f"10.0.{i // 256}.{i % 256}" for i in range(4097)) + "]}\n",
                     None),
    "billion laughs": ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)) + VALID % 9, None),
    "label over 63": (VALID % 9 + f"  {'l' * 64}: {{A: 192.0.2.2}}\n", None),
    "name over 255": (VALID % 9 + "  " + ".".join(["n" * 60] * 4) + ": {A: 192.0.2.2}\n", None),
}


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    zones = tmp_path_factory.mktemp("hostile") / "zones"
    zones.mkdir()
    write_zone(zones, "victim.test", VALID % 1)
    server = start_server(zones, "--max-zone-size", "0.0625")  # 64 KiB
    yield server
    stop_server(server.process)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_zone_file_is_refused_and_the_zone_keeps_serving(hostile_server: ServerProcess, case: str) -> None:
    text, expected = HOSTILE[case]
    path = hostile_server.zone_dir / "victim.test.yaml"
    fragment = {"too big": "over the limit of 65,536", "absurd RRset": "A: 4097 records; an RRset holds at most 4096",
                "billion laughs": "document expands to more than", "label over 63": "label longer than 63 octets",
                "name over 255": "name longer than 255 octets"}[case]
    seen_before = len(hostile_server.log)
    path.write_text(text)
    try:
        line = wait_until(lambda: next((entry for entry in list(hostile_server.log)[seen_before:]
                                        if "zone error: " in entry and fragment in entry), None), timeout=10)
    except AssertionError:
        raise AssertionError(f"no {fragment!r} error; log since the write:\n"
                             + "\n".join(list(hostile_server.log)[seen_before:])) from None
    message = line.split("zone error: ", 1)[1]
    print(f"\n{case}: {message}")
    if expected is not None:
        assert message == expected.format(path=path, size=len(text.encode()))
    else:
        assert message.startswith(f"{path}:") and message.split(":")[1].isdigit(), message
    hostile_server.wait_for_log(r"zone not loaded file=.*victim\.test\.yaml; previous version keeps serving")
    assert hostile_server.query("victim.test", "SOA").answer[0][0].serial == 1
    path.write_text(VALID % 1)  # back, for the next case


def ask_as_nobody(path: Path) -> str:
    """Connect to the control socket from a forked child running as nobody, send a
    status request, and return what happened: the reply line or the error's name."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python-level cleanup, only the answer through the pipe
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                try:
                    sock.sendall(b'{"command": "status"}\n')
                except BrokenPipeError:
                    pass  # the server may refuse before reading anything; its reply is still there to read
                outcome = sock.recv(4096).decode(errors="replace").strip()
        except OSError as error:
            outcome = type(error).__name__
        os.write(write_end, outcome.encode()[:4000])
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        return pipe.read().decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_control_socket_refuses_other_users(zone_dir: Path) -> None:
    reachable = Path(tempfile.mkdtemp(prefix="authdns-ctl-"))  # not under pytest's private tmp
    os.chmod(reachable, 0o755)  # let the other user reach the socket's directory
    control = reachable / "control.sock"
    server = start_server(zone_dir, "--control", str(control))
    try:
        assert ask_as_nobody(control) == "PermissionError"  # mode 0600
        os.chmod(control, 0o666)  # the mode widened by mistake: the kernel's credentials still decide
        assert '"not the server\'s owner"' in ask_as_nobody(control)
        server.wait_for_log(r"control connection from uid 65534 refused")
        assert server.query("example.test", "SOA").answer  # and the server carries on
    finally:
        stop_server(server.process)
        shutil.rmtree(reachable, ignore_errors=True)


def test_udp_answers_never_exceed_the_advertised_size(zone_dir: Path) -> None:
    """Every UDP answer fits min(the client's EDNS size, ours) (512 without EDNS, RFC 6891
    §6.2.3/§6.2.5), large answers included: truncated (TC) rather than oversized."""
    txt = ", ".join(f'"{"t" * 200}-{index}"' for index in range(20))
    write_zone(zone_dir, "big.test", f'ttl: 60\nrecords:\n  "@": {{NS: ns1, TXT: [{txt}]}}\n  ns1: {{A: 192.0.2.1}}\n'
               + "".join(f"  many: {{A: [{', '.join(f'10.1.{i}.{j}' for j in range(60))}]}}\n" for i in range(1)))
    server = start_server(zone_dir, workers=2)
    try:
        checked = truncated = 0
        for name in ("big.test", "many.big.test", "example.test", "pool.example.test", "nope.example.test"):
            for rdtype in ("TXT", "A", "MX", "ANY", "NS", "SOA"):
                for payload in (None, 512, 700, 1232, 4096):
                    query = dns.message.make_query(name, rdtype, use_edns=None if payload is None else 0,
                                                   payload=payload or 0)
                    limit = 512 if payload is None else min(max(payload, 512), 1232)
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                        sock.settimeout(2)
                        sock.sendto(query.to_wire(), (server.host, server.port))
                        reply = sock.recv(65535)
                    assert len(reply) <= limit, (name, rdtype, payload, len(reply))
                    checked += 1
                    truncated += bool(reply[2] & 0x02)
        print(f"\npayload sweep: {checked} answers within their limit, {truncated} of them truncated")
        assert truncated > 0, "the sweep must include answers too large for some limits"
    finally:
        stop_server(server.process)
