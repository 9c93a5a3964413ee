"""``authdns serve --workers 2``: a supervisor and two forked workers on shared sockets,
on the standard event loop and on uvloop.

Checks, each from outside (queries from fresh source ports, so the kernel's SO_REUSEPORT
hash spreads them over both workers; ``authdns status --json`` for who serves):
* both workers answer, and ``status`` adds their counters up exactly;
* a zone reload reaches every worker: once the new serial is seen, no query from any
  source port sees the old one, and the old workers have exited;
* no query is lost while zones are rewritten and reloaded under a bounded query loop;
* a health flip and a drain reach every worker, and health probes do not multiply with
  workers (a probed listener sees one prober's connections, not two);
* a killed worker is replaced in its slot, and queries keep being answered;
* the supervisor's death takes the workers with it; SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from conftest import ServerProcess, run_authdns, start_server, status_json, stop_server, wait_until
from smtp_listeners import FakeSmtp
from support import PROBE_INTERVAL as INTERVAL, probed_pool_zone, write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

ORIGIN = "workers.test"


@pytest.fixture
def listeners() -> Iterator[list[FakeSmtp]]:
    """mx1, mx2, mx3's SMTP listeners."""
    started = [FakeSmtp("ok").start() for _ in range(3)]
    yield started
    for smtp in started:
        smtp.stop()


def ports(listeners: list[FakeSmtp]) -> list[int]:
    return [smtp.port for smtp in listeners]


@pytest.fixture(params=["asyncio", "uvloop"])
def server(tmp_path: Path, listeners: list[FakeSmtp], request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Two workers, on each event loop (uvloop: when installed; the test extra has it)."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, ORIGIN, probed_pool_zone(ports(listeners)))
    started = start_server(zones, "--workers", "2", loop=request.param)
    yield started
    stop_server(started.process)


def authdns(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return run_authdns(*args[:1], "--state-dir", server.state_dir, *args[1:], timeout=15)


def status(server: ServerProcess) -> dict:
    return status_json(server.state_dir)


def first_exchanges(server: ServerProcess, count: int) -> list[str]:
    """The first MX of ``count`` answers, each asked from a new socket (new source port)."""
    firsts = []
    for _ in range(count):
        reply = server.query(f"pool.{ORIGIN}", "MX")
        assert reply.rcode() == dns.rcode.NOERROR
        firsts.append(reply.answer[0][0].exchange.to_text())
    return firsts


def exchanges(server: ServerProcess) -> set[str]:
    """Every exchange in one answer (a down member leaves the answer, not just first place)."""
    return {record.exchange.to_text() for record in server.query(f"pool.{ORIGIN}", "MX").answer[0]}


def serials(server: ServerProcess, count: int) -> set[int]:
    return {server.query(ORIGIN, "SOA").answer[0][0].serial for _ in range(count)}


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def worker_pids(server: ServerProcess) -> list[int]:
    return [worker["pid"] for worker in status(server)["workers"]]


def test_both_workers_answer_and_status_adds_them_up(server: ServerProcess) -> None:
    pids = worker_pids(server)
    assert len(set(pids)) == 2 and server.process.pid not in pids
    for pid in pids:  # forked by the supervisor, not started beside it
        with open(f"/proc/{pid}/stat") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[1]) == server.process.pid
    firsts = first_exchanges(server, 200)
    shown = authdns(server, "status")
    assert shown.returncode == 0 and "workers 2: #0 pid " in shown.stdout, shown
    seen = status(server)
    assert all(worker["queries"] > 0 for worker in seen["workers"]), seen["workers"]
    pool = next(rrset for rrset in seen["rrsets"] if rrset["owner"] == f"pool.{ORIGIN}.")
    counted = {member["member"]: member["first"] for member in pool["members"]}
    assert sum(counted.values()) == 200
    for member, first in counted.items():
        assert first == firsts.count(member)
        # Round robin per worker: over both, each member within one pick per worker of a third.
        assert abs(first - 200 / 3) <= 2 + 1, counted


def test_reload_reaches_every_worker(server: ServerProcess, listeners: list[FakeSmtp]) -> None:
    old_pids = worker_pids(server)
    write_zone(server.zone_dir, ORIGIN, probed_pool_zone(ports(listeners), serial=2))
    wait_until(lambda: 2 in serials(server, 1) or None, timeout=10)
    assert serials(server, 100) == {2}  # every worker, whichever a source port reaches
    wait_until(lambda: not any(alive(pid) for pid in old_pids) or None, timeout=10)
    workers = status(server)["workers"]
    assert not set(old_pids) & {worker["pid"] for worker in workers}
    assert len({worker["generation"] for worker in workers}) == 1


def test_no_query_lost_while_zones_reload(server: ServerProcess, listeners: list[FakeSmtp]) -> None:
    sent = lost = 0
    serial = 1
    deadline = time.monotonic() + 20
    while serial < 6 and time.monotonic() < deadline:
        serial += 1
        write_zone(server.zone_dir, ORIGIN, probed_pool_zone(ports(listeners), serial=serial))
        seen: set[int] = set()
        while serial not in seen and time.monotonic() < deadline:
            for _ in range(25):
                sent += 1
                try:
                    reply = server.query(ORIGIN, "SOA", timeout=2.0)
                except dns.exception.Timeout:
                    lost += 1
                    continue
                assert reply.rcode() == dns.rcode.NOERROR
                seen.add(reply.answer[0][0].serial)
    assert serial == 6, "reloads did not all take effect in time"
    assert lost == 0, f"{lost} of {sent} queries unanswered"
    assert server.wait_for_log(r"workers serving generation=")


def test_health_and_drains_reach_every_worker_and_probes_do_not_multiply(
        server: ServerProcess, listeners: list[FakeSmtp]) -> None:
    # One prober connects every INTERVAL; one per worker would connect twice as often.
    listener = listeners[0]
    count = 10
    before, started = listener.connections, time.monotonic()
    wait_until(lambda: listener.connections >= before + count or None, timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.75 * (count - 1) * INTERVAL, f"{count} probes in {elapsed:.2f} s"
    listener.stop()
    wait_until(lambda: "mx1.workers.test." not in exchanges(server) or None, timeout=5)
    assert all("mx1.workers.test." not in exchanges(server) for _ in range(60))
    listener.start()
    wait_until(lambda: "mx1.workers.test." in exchanges(server) or None, timeout=5)
    assert all("mx1.workers.test." in exchanges(server) for _ in range(60))
    result = authdns(server, "ctl", "drain", f"pool.{ORIGIN}", "MX", f"mx2.{ORIGIN}")
    assert result.returncode == 0, result.stderr
    firsts = first_exchanges(server, 60)
    assert "mx2.workers.test." not in firsts and "mx1.workers.test." in firsts


def test_a_killed_worker_is_replaced(server: ServerProcess) -> None:
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)  # a worker of the server this test started
    def replaced() -> list | None:
        pids = worker_pids(server)
        return pids if victim not in pids and len(pids) == 2 else None
    wait_until(replaced, timeout=10)
    assert serials(server, 50) == {1}
    server.wait_for_log(rf"worker exited slot=0 pid={victim} killed by SIGKILL")


def test_workers_end_with_the_supervisor(tmp_path: Path, listeners: list[FakeSmtp]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, ORIGIN, probed_pool_zone(ports(listeners)))
    killed = start_server(zones, "--workers", "2")
    pids = worker_pids(killed)
    killed.process.send_signal(signal.SIGKILL)  # no goodbye: the workers see their channel close
    killed.process.wait(timeout=5)
    wait_until(lambda: not any(alive(pid) for pid in pids) or None, timeout=10)

    stopped = start_server(zones, "--workers", "2")
    pids = worker_pids(stopped)
    stopped.process.send_signal(signal.SIGTERM)
    assert stopped.process.wait(timeout=15) == 0
    assert not any(alive(pid) for pid in pids)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", stopped.port))  # the port is free again: nothing holds it


def soft_descriptor_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no descriptor limit in /proc")


def test_supervisor_raises_its_descriptor_limit_too(tmp_path: Path) -> None:
    """The supervisor probes every checked member (a socket each) but never starts a
    DnsServer when workers answer: it raises its own soft RLIMIT_NOFILE to the hard limit,
    as the workers do, or a large pool's probes would find no descriptor under systemd's
    soft 1024."""
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    write_zone(zone_dir, "example.test", "soa: {}\nns: [ns1]\nrecords:\n  ns1: {A: 192.0.2.53}\n")
    server = start_server(zone_dir, workers=2, prefix=("prlimit", "--nofile=512:4096"))
    try:
        pids = worker_pids(server)
        assert len(pids) == 2
        assert soft_descriptor_limit(server.process.pid) == 4096
        assert all(soft_descriptor_limit(pid) == 4096 for pid in pids)
    finally:
        stop_server(server.process)
