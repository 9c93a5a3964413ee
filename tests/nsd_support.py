"""What the tests that run NSD beside authdns share: where NSD is, a port free for UDP
and TCP, the server part of an nsd.conf for a private instance, and stopping it by PID.
Debian's NSD rate-limits by default (rrl-ratelimit): the config turns that off, or its
answers go missing under the tests' query rates."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

HOST = "127.0.0.1"


def find_nsd() -> str | None:
    found = shutil.which("nsd")
    if found:
        return found
    return "/usr/sbin/nsd" if os.access("/usr/sbin/nsd", os.X_OK) else None


NSD = find_nsd()


def free_port() -> int:
    """A loopback port free for both UDP and TCP at the time of asking."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind((HOST, port))
            except OSError:
                continue
            return port
    raise AssertionError("no loopback port free for both UDP and TCP")


def server_lines(base: Path, port: int, zonesdir: Path, verbosity: int = 1) -> list[str]:
    """The ``server:`` and ``remote-control:`` sections: one process on HOST:port, no
    rate limiting, every file under ``base``, no privileges dropped."""
    return [
        "server:",
        f"    port: {port}",
        f"    ip-address: {HOST}",
        "    server-count: 1",
        "    rrl-ratelimit: 0",
        "    rrl-whitelist-ratelimit: 0",
        f'    zonesdir: "{zonesdir}"',
        f'    pidfile: "{base / "nsd.pid"}"',
        '    database: ""',
        f'    zonelistfile: "{base / "zone.list"}"',
        f'    xfrdfile: "{base / "xfrd.state"}"',
        f'    xfrdir: "{base}"',
        '    username: ""',
        '    chroot: ""',
        f"    verbosity: {verbosity}",
        "    hide-version: no",
        f'    logfile: "{base / "nsd.log"}"',
        "remote-control:",
        "    control-enable: no",
    ]


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL after a deadline."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
