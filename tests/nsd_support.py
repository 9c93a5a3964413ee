"""What the tests that run NSD beside authdns share: where NSD is, a port free for UDP
and TCP, the server part of an nsd.conf for a private instance, and stopping it by PID.
Debian's NSD rate-limits by default (rrl-ratelimit): the config turns that off, or its
answers go missing under the tests' query rates."""

from __future__ import annotations

from pathlib import Path

from support import find_program

HOST = "127.0.0.1"


NSD = find_program("nsd")


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
