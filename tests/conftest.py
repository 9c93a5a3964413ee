"""Shared fixtures: a copy of the shipped zones, a real ``authdns serve`` subprocess on a
free loopback port, the one way to run an authdns command (``authdns_command``,
``run_authdns``, ``status_json``), dnspython helpers, and ``wait_until`` (poll with a
deadline, never a bare sleep)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ZONES = ROOT / "zones"


def authdns_command(*args: str | Path) -> list[str]:
    """The command line that runs this checkout's authdns under the test's interpreter
    (never a shim: a PID must be the server's own)."""
    return [sys.executable, "-m", "authdns", *map(str, args)]


def run_authdns(*args: str | Path, stdin: str | None = None, cwd: Path = ROOT, timeout: float = 60.0,
                check: bool = False) -> subprocess.CompletedProcess:
    """Run one authdns command to completion, output captured as text. PYTHONPATH names
    the checkout, so it runs the same from any working directory."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    return subprocess.run(authdns_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          input=stdin, env=env, check=check)


def status_json(state_dir: Path) -> dict:
    """``authdns status --json`` of the server whose state directory this is."""
    result = run_authdns("status", "--json", "--state-dir", state_dir, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until(check: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Poll ``check`` until it returns a value; fail with its name at the deadline."""
    deadline = time.monotonic() + timeout
    while (value := check()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{getattr(check, '__name__', 'condition')} not met within {timeout}s")
        time.sleep(interval)
    return value


@dataclass
class ServerProcess:
    """A running ``python -m authdns serve``; ``log`` collects its stderr lines."""

    process: subprocess.Popen
    host: str
    port: int
    zone_dir: Path
    log: list[str] = field(default_factory=list)
    state_dir: Path | None = None  # its --state-dir: overrides file and control socket

    def query(self, qname: str, qtype: str = "A", *, tcp: bool = False, timeout: float = 2.0,
              rd: bool = False, **make_query_args) -> dns.message.Message:
        """One query; RD off by default (like ``dig +norec``), other args go to make_query."""
        message = dns.message.make_query(qname, qtype, **make_query_args)
        if not rd:
            message.flags &= ~dns.flags.RD
        return self.send(message, tcp=tcp, timeout=timeout)

    def send(self, message: dns.message.Message, *, tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
        if tcp:
            return dns.query.tcp(message, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(message, self.host, port=self.port, timeout=timeout, ignore_trailing=False)

    def log_text(self) -> str:
        return "\n".join(self.log)

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        regex = re.compile(pattern)

        def matching_line() -> str | None:
            return next((line for line in list(self.log) if regex.search(line)), None)

        matching_line.__name__ = f"log line matching {pattern!r}"
        return wait_until(matching_line, timeout)


def _reader(stream, sink: list[str], ready: threading.Event, port_box: list[int]) -> None:
    for raw in stream:
        line = raw.rstrip("\n")
        sink.append(line)
        match = re.search(r"\bready port=(\d+)", line)
        if match:
            port_box.append(int(match.group(1)))
            ready.set()
    ready.set()  # the process ended: unblock the waiter, which then reports the log


def fresh_state_dir(zone_dir: Path) -> Path:
    """A state directory of its own beside the zones (drains, control socket), so servers
    running at once never share a control socket. Unix socket paths are short (108)."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=zone_dir.parent))
    assert len(str(state / "control.sock")) < 100, f"state dir path too long for a unix socket: {state}"
    return state


def start_server(zone_dir: Path, *extra: str, host: str = "127.0.0.1", timeout: float = 15.0,
                 workers: int | None = 1, loop: str | None = "asyncio",
                 environment: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> ServerProcess:
    """Start the server on ``host`` port 0 and wait for its ``ready port=N`` line. Unless
    ``extra`` names one, the server gets a fresh ``--state-dir`` (``server.state_dir``).

    One process by default: tests of exact rotation sequences, ``explain`` predictions
    and per-process limits need one rotor and one listener. ``workers=None`` runs the
    server's own default (a worker per core), as the README does; test_workers.py
    covers what changes with several. The standard asyncio loop by default (what a plain
    ``pip install`` runs); ``loop=None`` lets the server pick (uvloop when installed)."""
    if "--state-dir" not in extra:
        extra = ("--state-dir", str(fresh_state_dir(zone_dir)), *extra)
    if workers is not None and "--workers" not in extra:
        extra = ("--workers", str(workers), *extra)
    if loop is not None and "--loop" not in extra:
        extra = ("--loop", loop, *extra)
    # ``prefix``: a program that execs the server (setpriv, to drop capabilities): the PID stays the server's.
    command = [*prefix, *authdns_command("serve", "--zones", zone_dir, "--listen", f"{host}:0", *extra)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(environment or {}))
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    log: list[str] = []
    ready = threading.Event()
    port_box: list[int] = []
    threading.Thread(target=_reader, args=(process.stderr, log, ready, port_box), daemon=True).start()
    if not ready.wait(timeout) or not port_box:
        stop_server(process)
        raise AssertionError("server did not become ready:\n" + "\n".join(log))
    server = ServerProcess(process, host, port_box[0], zone_dir, log, Path(extra[extra.index("--state-dir") + 1]))
    wait_until(lambda: _answers(server), timeout=5.0)
    return server


def _answers(server: ServerProcess) -> bool | None:
    try:
        server.query("example.test", "SOA", timeout=0.5)
        return True
    except Exception:
        return None


def stop_server(process: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop only the process we started, by its PID: SIGTERM, then SIGKILL after ``grace``
    seconds (a server, NSD, anything the tests start)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture
def zone_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped zones, safe to edit."""
    target = tmp_path / "zones"
    shutil.copytree(SHIPPED_ZONES, target)
    return target


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module, serving a copy of the shipped example zones (read-only use),
    with the server's defaults: a worker per core, uvloop when installed (the test extra
    installs it)."""
    target = tmp_path_factory.mktemp("zones") / "zones"
    shutil.copytree(SHIPPED_ZONES, target)
    server = start_server(target, workers=None, loop=None)
    try:
        yield server
    finally:
        stop_server(server.process)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers on demand (own zone dirs, extra flags); all stopped afterwards."""
    started: list[ServerProcess] = []

    def factory(zone_dir: Path, *extra: str, **kwargs) -> ServerProcess:
        server = start_server(zone_dir, *extra, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server.process)


def rrset_texts(section) -> set[str]:
    """A section as a set of ``name ttl class type rdata`` lines: order-free comparison."""
    return {line for rrset in section for line in rrset.to_text().splitlines()}
