"""``authdns demo``: runs on its own, shows the failover and the shares, and leaves
nothing running.

Checks: a 9-second run exits 0 and prints mx2 leaving the answers after its listener
stops and coming back after it starts, round-robin MX shares near a third each before
the stop, the weighted A near 3:1; the server it started is gone and its listeners'
ports are free afterwards. Ctrl-C (SIGINT) midway ends it cleanly too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading

import pytest

from conftest import ROOT, authdns_command, run_authdns, wait_until

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

pytest.importorskip("aiosmtpd")


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_demo_shows_failover_and_shares_and_cleans_up() -> None:
    result = run_authdns("demo", "--seconds", "9", timeout=90)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"mx2 left the answers, [\d.]+ s after its listener stopped", out), out
    assert re.search(r"mx2 is back in the answers, [\d.]+ s after its listener started", out), out
    before_stop = out.split("mx2's SMTP listener stopped")[0]
    last = re.findall(r"MX first: mx1 ([\d.]+)% .*? mx2 ([\d.]+)% .*? mx3 ([\d.]+)%", before_stop)[-1]
    assert all(abs(float(share) - 100 / 3) < 5 for share in last), last
    totals = re.search(r"smtp A \{'192\.0\.2\.21': (\d+), '192\.0\.2\.23': (\d+)\}", out)
    heavy, light = int(totals.group(1)), int(totals.group(2))
    assert abs(heavy / (heavy + light) - 0.75) < 0.05, totals.group(0)
    pid = int(re.search(r"authdns pid (\d+)", out).group(1))
    assert gone(pid)
    for port in re.findall(r"mx\d 127\.0\.0\.1:(\d+)", out):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", int(port)))  # nothing listens there any more
    assert "stopped: server, listeners and the demo's files are gone" in out


def test_ctrl_c_ends_it_cleanly() -> None:
    process = subprocess.Popen(authdns_command("demo", "--seconds", "60"), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("MX first" in line for line in list(lines)) or None, timeout=30)
        pid = int(re.search(r"authdns pid (\d+)", "".join(lines)).group(1))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        reader.join(timeout=5)
        assert "stopped: server, listeners and the demo's files are gone" in "".join(lines)
        wait_until(lambda: gone(pid) or None, timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
