"""systemd integration for real: the notify protocol over a unix datagram socket the test
listens on (as systemd does), and the shipped unit checked by ``systemd-analyze``.

Checks:
* READY=1 arrives once, after the DNS port answers (a query sent the moment it arrives
  is answered), with a STATUS= line; with several workers, only the supervisor speaks;
* SIGHUP gives RELOADING=1 (with MONOTONIC_USEC) and then READY=1 with the new status;
* with WATCHDOG_USEC set, WATCHDOG=1 keeps coming; SIGTERM gives STOPPING=1;
* an abstract-namespace NOTIFY_SOCKET ("@name") works too;
* ``systemd-analyze verify`` accepts systemd/authdns.service (ExecStart= pointed at the
  installed ``authdns``), and ``systemd-analyze security --offline`` rates it "OK" or
  better (exposure below 2.0; printed with -s).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import ROOT, ServerProcess, start_server, stop_server, wait_until

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

UNIT = ROOT / "systemd" / "authdns.service"


class NotifyListener:
    """A unix datagram socket like systemd's notify socket; collects messages with the
    time each arrived."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[dict[str, str]]:
        return [fields for _, fields in list(self.messages) if key in fields]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, NotifyListener]]:
    path = str(tmp_path / "notify.sock")
    listener = NotifyListener(path)
    yield path, listener
    listener.close()


def answers_now(server_port: int) -> bool:
    reply = dns.query.udp(dns.message.make_query("example.test", "SOA"), "127.0.0.1", port=server_port, timeout=2)
    return reply.rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_after_the_port_answers_then_reload_and_stop(zone_dir: Path, notify_socket, workers: int) -> None:
    path, listener = notify_socket
    server = start_server(zone_dir, workers=workers, environment={"NOTIFY_SOCKET": path})
    try:
        ready = wait_until(lambda: listener.with_key("READY") or None)
        assert answers_now(server.port)
        assert len(ready) == 1 and ready[0]["READY"] == "1"
        assert re.fullmatch(r"serving 3 zone\(s\)(, 2 workers)?, generation \d+", ready[0]["STATUS"]), ready
        os.kill(server.process.pid, signal.SIGHUP)
        wait_until(lambda: len(listener.with_key("READY")) >= 2 or None)
        keys = [next(iter(fields)) for _, fields in listener.messages]
        assert keys == ["READY", "RELOADING", "READY"], listener.messages
        reloading = listener.with_key("RELOADING")[0]
        assert reloading["MONOTONIC_USEC"].isdigit()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0
        assert listener.with_key("STOPPING"), listener.messages
    finally:
        stop_server(server.process)


def test_watchdog_pings(zone_dir: Path, notify_socket) -> None:
    path, listener = notify_socket
    server = start_server(zone_dir, environment={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        wait_until(lambda: len(listener.with_key("WATCHDOG")) >= 4 or None, timeout=5)
        times = [at for at, fields in listener.messages if "WATCHDOG" in fields]
        assert all(later - earlier < 0.2 for earlier, later in zip(times, times[1:])), times
    finally:
        stop_server(server.process)


def test_watchdog_for_another_pid_is_ignored_and_abstract_socket_works(zone_dir: Path) -> None:
    name = f"authdns-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = NotifyListener("\0" + name)
    server: ServerProcess | None = None
    try:
        server = start_server(zone_dir, environment={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "100000",
                                                      "WATCHDOG_PID": "1"})
        wait_until(lambda: listener.with_key("READY") or None)
        assert answers_now(server.port)
        assert not listener.with_key("WATCHDOG")  # WATCHDOG_PID names another process
    finally:
        if server is not None:
            stop_server(server.process)
        listener.close()


def installed_unit(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart= pointing at this machine's ``authdns`` (what the
    README's install section tells the reader to adjust)."""
    executable = shutil.which("authdns")
    if executable is None:
        pytest.skip("the authdns console script is not on PATH")
    unit = tmp_path / "authdns.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/authdns", executable))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (Debian: systemd)")
def test_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = installed_unit(tmp_path)
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert verify.returncode == 0, verify.stderr
    assert "authdns.service" not in verify.stderr, verify.stderr  # no warning about our unit
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                              text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for authdns.service: ([\d.]+) (\w+)", security.stdout)
    assert match, security.stdout + security.stderr
    print(f"systemd-analyze security: {match.group(1)} {match.group(2)}")
    assert float(match.group(1)) < 2.0, security.stdout
