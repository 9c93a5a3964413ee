"""TCP that cannot be turned against UDP or against new TCP clients (issue 15, items 7, 9).

A real server, hostile raw-socket clients from distinct loopback addresses (127.0.1.N,
tests/tcp_attacks.py), dnspython as the well-behaved client. Checks, figures printed (-s):

* 1,000 idle connections from 100 addresses against a cap of 200: each new connection
  over the cap closes the idlest (RFC 7766 §6.2.3), so 15 new TCP queries are answered
  (at least 14);
* 1,000 connections trickling one byte every 2 s, default settings: a message that has
  not arrived within --tcp-io-timeout closes its connection, and new TCP queries are
  answered (at least 19 of 20);
* 200 connections from 10 addresses pipelining queries and never reading an answer: UDP
  queries meanwhile are all answered (none lost, each within a generous 1.5 s), the
  server's resident memory grows by less than 50 MiB, new TCP queries are answered;
* a client that does not read its answers is reset after --tcp-io-timeout (or at once
  over --tcp-max-output), a query that trickles in is closed after --tcp-io-timeout, each
  counted in authdns_tcp_closed_total{reason}.

No timing thresholds beyond the generous per-query timeouts: latencies and the NSD
comparison live in bench/tcp_pressure.py. Counts are bounded and checked against the
descriptor limit first.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import tcp_attacks
from conftest import start_server, stop_server, wait_until

CONNECTIONS = 1000
PROBE = "127.0.0.2"


def need_descriptors(count: int) -> None:
    room = tcp_attacks.descriptor_room()
    if room < count + 100:
        pytest.skip(f"this process may open {room} more descriptors, the test needs {count + 100}")


@pytest.mark.slow
def test_idle_connections_from_many_addresses_leave_room_for_new_clients(zone_dir: Path) -> None:
    need_descriptors(CONNECTIONS)
    server = start_server(zone_dir, "--tcp-max-connections", "200")
    idle = []
    try:
        idle = tcp_attacks.open_idle(server.host, server.port, tcp_attacks.sources(100), CONNECTIONS // 100)
        probes = tcp_attacks.Probes()
        for _ in range(15):
            tcp_attacks.probe_tcp(probes, server.host, server.port, PROBE, timeout=2.0)
        print(f"\n{len(idle)} idle connections from 100 addresses, cap 200: {probes.line()}")
        assert probes.tcp_answered >= 14, probes.line()
    finally:
        for sock in idle:
            sock.close()
        stop_server(server.process)


@pytest.mark.slow
def test_trickling_connections_leave_room_for_new_clients(zone_dir: Path) -> None:
    need_descriptors(CONNECTIONS)
    server = start_server(zone_dir)  # the defaults: what an operator runs
    socks = []
    stop = threading.Event()
    try:
        socks = tcp_attacks.open_idle(server.host, server.port, tcp_attacks.sources(100), CONNECTIONS // 100)
        trickler = threading.Thread(target=tcp_attacks.trickle, args=(socks, 10, 2.0, stop), daemon=True)
        trickler.start()
        probes = tcp_attacks.Probes()
        for _ in range(20):
            tcp_attacks.probe_tcp(probes, server.host, server.port, PROBE, timeout=2.0)
            stop.wait(0.25)  # spread the probes over the trickle's rounds
        print(f"\n{len(socks)} connections trickling 1 byte / 2 s: {probes.line()}")
        assert probes.tcp_answered >= 19, probes.line()
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        stop_server(server.process)


@pytest.mark.slow
def test_pipelining_clients_that_never_read_do_not_hold_up_udp(zone_dir: Path) -> None:
    need_descriptors(200)
    server = start_server(zone_dir)
    attack = tcp_attacks.flood(server.host, server.port, tcp_attacks.sources(10), 20)
    try:
        before = tcp_attacks.rss_bytes(server.process.pid)
        attack.start(seconds=8.0)
        probes = tcp_attacks.Probes()
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            for _ in range(10):
                tcp_attacks.probe_udp(probes, server.host, server.port, "127.0.0.3", timeout=1.5)
            tcp_attacks.probe_tcp(probes, server.host, server.port, PROBE, timeout=2.0)
        grown = tcp_attacks.rss_bytes(server.process.pid) - before
        print(f"\n{len(attack.socks)} pipelining connections from 10 addresses, {attack.sent} queries "
              f"written: {probes.line()}; RSS +{grown / (1 << 20):.1f} MiB")
        assert probes.udp_sent >= 20, "the probes must have run"
        assert probes.udp_answered == probes.udp_sent, probes.line()
        assert probes.tcp_answered >= probes.tcp_sent - 1, probes.line()
        assert grown < 50 << 20, f"RSS grew by {grown / (1 << 20):.1f} MiB"
    finally:
        attack.finish()
        stop_server(server.process)


def closed_count(server, reason: str) -> int | None:
    """authdns_tcp_closed_total{reason} from /metrics (None before the first)."""
    port = int(re.search(r"port=(\d+)", server.wait_for_log(r"metrics and status page http://")).group(1))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    match = re.search(r'authdns_tcp_closed_total\{reason="%s"\} (\S+)' % reason, text)
    return int(float(match.group(1))) if match else None


def reset_by_server(sock: socket.socket) -> bool | None:
    try:
        sock.send(tcp_attacks.query_frame(), socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return True
    return None


@pytest.mark.parametrize("flags, reason", [
    (("--tcp-io-timeout", "0.5"), "not_reading"),
    (("--tcp-max-output", "0.01"), "output_full"),  # 10 KiB in all: under one connection's backlog
], ids=["io-timeout", "max-output"])
def test_a_client_that_does_not_read_its_answers_is_reset(zone_dir: Path, flags, reason: str) -> None:
    """Its answers pile up past --tcp-max-backlog: the connection stops reading, and is
    reset once they have waited --tcp-io-timeout, or at once when they are over
    --tcp-max-output in all. A small receive window makes the pile-up quick."""
    server = start_server(zone_dir, "--metrics", "127.0.0.1:0", *flags)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.1.1", 0))
        sock.connect((server.host, server.port))
        attack = tcp_attacks.Flood([sock])
        attack.start(seconds=8.0)
        wait_until(lambda: attack.closed or None, timeout=10.0)
        attack.finish()
        assert wait_until(lambda: closed_count(server, reason), timeout=5.0) == 1
        # The server still answers others.
        probes = tcp_attacks.Probes()
        tcp_attacks.probe_tcp(probes, server.host, server.port, PROBE, timeout=2.0)
        assert probes.tcp_answered == 1
    finally:
        sock.close()
        stop_server(server.process)


def test_a_query_that_trickles_in_is_closed_and_counted(zone_dir: Path) -> None:
    server = start_server(zone_dir, "--metrics", "127.0.0.1:0", "--tcp-io-timeout", "0.3")
    sock = tcp_attacks.connect_from("127.0.1.1", server.host, server.port, timeout=5.0)
    assert sock is not None
    try:
        sock.sendall(tcp_attacks.query_frame()[:5])  # the length and part of the header, then nothing
        assert wait_until(lambda: closed_count(server, "slow_query"), timeout=5.0) == 1
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass  # reset: closed too
    finally:
        sock.close()
        stop_server(server.process)
