"""A hung worker is noticed: ``authdns serve --workers 2 --heartbeat-timeout 1``, one
worker stopped with SIGSTOP while a dnspython client asks at a steady, bounded rate.

Checks, from outside:
* the stopped worker is killed and its slot forked again (log lines, ``status``), and
  ``status`` counts the hang, shows each worker's heartbeat age, and /metrics counts it;
* what the stopped worker's sockets queued meanwhile is answered by the next one: no
  more queries go unanswered than the stopped slot's share of those sent while it was
  out, and every query sent once the new worker serves is answered;
* a large zone's rollout (a long fork and publish on the supervisor's loop, which leaves
  heartbeats unread) is not taken for a hang, even with the shortest timeout.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import pytest
from conftest import ServerProcess, run_authdns, start_server, status_json, stop_server, wait_until
from support import write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

ORIGIN = "beat.test"
TIMEOUT = 1.0  # --heartbeat-timeout
RATE = 100  # queries per second
ANSWER_WITHIN = 4.0  # seconds the client waits for an answer before it counts the query lost
LOAD_LIMIT = 20.0  # seconds the load may run, at most


def zone(hosts: int = 1) -> str:
    names = "".join(f"  h{index}: {{A: 192.0.2.{index % 250 + 1}}}\n" for index in range(hosts))
    return f"records:\n  \"@\":\n    SOA: {{serial: 1}}\n    NS: ns1\n  ns1: {{A: 192.0.2.53}}\n{names}"


@dataclass
class SteadyLoad:
    """UDP SOA queries at RATE from a new socket each (a new source port, so the
    kernel's SO_REUSEPORT hash spreads them over the workers), answers awaited
    ANSWER_WITHIN seconds, in a thread until ``stop`` or LOAD_LIMIT."""

    server: ServerProcess
    sent: list[float] = field(default_factory=list)  # when each query went out (monotonic)
    answered: dict[int, float] = field(default_factory=dict)  # query index -> when its answer came
    lost: list[int] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "SteadyLoad":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        assert self.done.wait(ANSWER_WITHIN + 5), "the load did not finish"

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        begun = time.monotonic()
        waiting: dict[int, tuple[socket.socket, dns.message.Message]] = {}
        try:
            while waiting or (not self.stopping.is_set() and time.monotonic() - begun < LOAD_LIMIT):
                now = time.monotonic()
                if not self.stopping.is_set() and now - begun < LOAD_LIMIT and now >= begun + len(self.sent) / RATE:
                    self._send(selector, waiting, now)
                    continue
                for key, _ in selector.select(timeout=max(0.0, min(0.005, begun + len(self.sent) / RATE - now))):
                    self._receive(selector, waiting, key.data)
                for index in [index for index in waiting if now - self.sent[index] > ANSWER_WITHIN]:
                    self.lost.append(index)
                    self._forget(selector, waiting, index)
        finally:
            for index in list(waiting):
                self._forget(selector, waiting, index)
            selector.close()
            self.done.set()

    def _send(self, selector: selectors.BaseSelector, waiting: dict, now: float) -> None:
        query = dns.message.make_query(ORIGIN, "SOA")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect((self.server.host, self.server.port))
        sock.send(query.to_wire())
        index = len(self.sent)
        self.sent.append(now)
        waiting[index] = (sock, query)
        selector.register(sock, selectors.EVENT_READ, index)

    def _receive(self, selector: selectors.BaseSelector, waiting: dict, index: int) -> None:
        sock, query = waiting[index]
        reply = dns.message.from_wire(sock.recv(65535))
        if not query.is_response(reply) or reply.rcode() != dns.rcode.NOERROR:
            self.wrong.append(reply.to_text())
        self.answered[index] = time.monotonic()
        self._forget(selector, waiting, index)

    @staticmethod
    def _forget(selector: selectors.BaseSelector, waiting: dict, index: int) -> None:
        sock, _ = waiting.pop(index)
        selector.unregister(sock)
        sock.close()

    def count_sent_between(self, start: float, end: float) -> int:
        return sum(1 for when in self.sent if start <= when <= end)


@pytest.fixture(params=["asyncio", "uvloop"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    zones = tmp_path / "zones"
    write_zone(zones, ORIGIN, zone())
    started = start_server(zones, "--workers", "2", "--heartbeat-timeout", str(TIMEOUT), "--metrics", "127.0.0.1:0",
                           loop=request.param)
    yield started
    stop_server(started.process)


def worker_pids(server: ServerProcess) -> dict[int, int]:
    return {worker["slot"]: worker["pid"] for worker in status_json(server.state_dir)["workers"]}


def metrics(server: ServerProcess) -> str:
    port = re.search(r"port=(\d+)", server.wait_for_log(r"metrics and status page http://")).group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def test_a_stopped_worker_is_killed_and_replaced_and_its_queue_answered(server: ServerProcess) -> None:
    victim = worker_pids(server)[0]
    load = SteadyLoad(server).start()
    try:
        wait_until(lambda: len(load.answered) >= RATE // 2 or None, timeout=10)  # the load runs, both serve
        stopped = time.monotonic()
        os.kill(victim, signal.SIGSTOP)  # a worker of the server this test started
        killed_line = server.wait_for_log(rf"worker hung slot=0 pid={victim}: no heartbeat for [\d.]+ s", timeout=10)
        server.wait_for_log(rf"worker exited slot=0 pid={victim} killed by SIGKILL; starting another in")
        serving_line = server.wait_for_log(r"worker serving slot=0 pid=", timeout=20)
        serving = time.monotonic()  # the log is read as it comes: this is when the new worker served, or later
        after = len(load.sent)
        wait_until(lambda: len(load.sent) >= after + RATE or None, timeout=10)  # a second of load on the new one
    finally:
        try:
            os.kill(victim, signal.SIGCONT)  # (on failure) let it go, so that the server can stop
        except ProcessLookupError:
            pass
        load.stop()
    silence = float(re.search(r"no heartbeat for ([\d.]+) s", killed_line).group(1))
    assert silence >= TIMEOUT  # logged to 2 decimals: 1.004 s prints as 1.00
    replacement = int(re.search(r"pid=(\d+)", serving_line).group(1))
    assert replacement != victim
    assert not load.wrong, load.wrong[:3]
    # A query sent to the stopped slot waits in its socket until the next worker reads it:
    # it goes unanswered only when that takes longer than the client waits. At most, then,
    # the stopped slot's share (half, by the port hash, here with room for chance) of the
    # queries sent while it was out; nothing sent once the new worker serves.
    out = load.count_sent_between(stopped, serving)
    assert len(load.lost) <= 0.75 * out + 2, (len(load.lost), out, len(load.sent))
    assert not [index for index in load.lost if load.sent[index] > serving], "lost after the new worker served"
    shown = status_json(server.state_dir)["workers"]
    assert {worker["slot"]: worker["pid"] for worker in shown}[0] == replacement
    assert [worker["hangs"] for worker in shown] == [1, 0]
    assert all(worker["heartbeat"] is not None and worker["heartbeat"] < TIMEOUT for worker in shown), shown
    text = run_authdns("status", "--state-dir", server.state_dir, timeout=30).stdout
    assert re.search(r"#0 pid \d+ \d+ queries, heartbeat [\d.]+ s ago \(1 restarts, 1 hung\)", text), text
    exposed = metrics(server)
    assert re.search(r"^authdns_worker_hangs_total 1\.0$", exposed, re.M), exposed
    assert re.search(r'^authdns_worker_heartbeat_age_seconds\{slot="1"\} ', exposed, re.M)
    print(f"stopped slot out {serving - stopped:.2f} s (silence {silence} s), {out} queries sent meanwhile, "
          f"{len(load.lost)} of {len(load.sent)} lost")


def serial_served(server: ServerProcess) -> int | None:
    try:
        return server.query(ORIGIN, "SOA", timeout=1.0).answer[0][0].serial
    except (dns.exception.Timeout, OSError):
        return None


def test_a_large_rollout_is_not_taken_for_a_hang(tmp_path: Path) -> None:
    """Loading a zone of 20,000 names in the supervisor's thread holds its loop for tenths
    of a second at a time (the GIL), and the fork of the new generation again: longer
    than the shortest timeout, so heartbeats are read late, which must not count."""
    zones = tmp_path / "zones"
    write_zone(zones, ORIGIN, zone(hosts=20_000))
    server = start_server(zones, "--workers", "2", "--heartbeat-timeout", "0.1", timeout=60)
    try:
        write_zone(zones, ORIGIN, zone(hosts=20_000).replace("serial: 1", "serial: 2"))
        wait_until(lambda: serial_served(server) == 2 or None, timeout=60)
        assert "worker hung" not in server.log_text()
        assert [worker["hangs"] for worker in status_json(server.state_dir)["workers"]] == [0, 0]
    finally:
        stop_server(server.process)
