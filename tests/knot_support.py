"""What the tests that run Knot DNS beside authdns share: where ``knotd`` is, and a
private instance's configuration (one worker of each kind on 127.0.0.1:PORT, its log,
journal and zone files under one directory, no privileges dropped)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import ExternalServer, find_program

HOST = "127.0.0.1"


KNOTD = find_program("knotd")


def server_lines(base: Path, port: int) -> list[str]:
    """The ``server:``, ``log:`` and ``database:`` sections."""
    return [
        "server:",
        f'    rundir: "{base}"',
        f"    listen: {HOST}@{port}",
        "    background-workers: 1",
        "    udp-workers: 1",
        "    tcp-workers: 1",
        "log:",
        f'  - target: "{base / "knot.log"}"',
        "    any: info",
        "database:",
        f'    storage: "{base / "db"}"',
    ]


def start_knot(base: Path, port: int, config_lines: list[str]) -> ExternalServer:
    """``knotd`` in the foreground with ``config_lines`` (server_lines and the rest)."""
    assert KNOTD is not None
    base.mkdir(parents=True, exist_ok=True)
    (base / "db").mkdir(exist_ok=True)
    config = base / "knot.conf"
    config.write_text("\n".join(config_lines) + "\n")
    process = subprocess.Popen([KNOTD, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ExternalServer(process, port, base / "knot.log")
