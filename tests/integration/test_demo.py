"""``authdns demo``: runs on its own, shows the mail delivered and its failover, and
leaves nothing running.

Checks: a 15-second run exits 0; before mx2's sink stops, the mail delivered is near
3:1:1; after, mx2 receives no mail (the senders fall back at once) and leaves the
answers, then comes back in the answers and in the mail after its sink starts again;
every message sent is delivered once, none lost, none deferred (``promote`` keeps a
fallback in every answer); the server it started is gone and the sinks' ports are free
afterwards. Ctrl-C (SIGINT) midway ends it cleanly too.
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


def mail_shares(line: str) -> list[int]:
    return [int(share) for share in re.findall(r"mail +(\d+)%", line)]


def now_shares(line: str) -> list[int]:
    return [int(share) for share in re.findall(r"\(now +(\d+)%\)", line)]


def test_demo_shows_delivered_mail_and_failover_and_cleans_up() -> None:
    result = run_authdns("demo", "--seconds", "15", timeout=120)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    before, stopped = out.split("mx2's SMTP sink stopped", 1)
    during, after = stopped.split("mx2's SMTP sink started again", 1)
    reports = [line for line in before.splitlines() if "DNS first" in line]
    assert reports, out
    shares = mail_shares(reports[-1])
    assert len(shares) == 3 and all(abs(got - want) <= 12 for got, want in zip(shares, (60, 20, 20))), reports[-1]
    assert re.search(r"mx2 left the answers, [\d.]+ s after its sink stopped", during), out
    assert any(now_shares(line)[1] == 0 for line in during.splitlines() if "DNS first" in line), during
    assert re.search(r"mx2 is back in the answers, [\d.]+ s after its sink started", after), out
    assert re.search(r"mx2 receives mail again, [\d.]+ s after its sink started", after), out
    total = re.search(r"total: sent (\d+), delivered (\d+) \(sinks received (\d+), duplicates 0\), still deferred 0, "
                      r"lost 0; longest deferral 0\.0 s", out)
    assert total and total.group(1) == total.group(2) == total.group(3) and int(total.group(1)) > 100, out
    pid = int(re.search(r"authdns pid (\d+)", out).group(1))
    assert gone(pid)
    for address, port in re.findall(r"mx\d (127\.0\.0\.1\d):(\d+)", out):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, int(port)))  # nothing listens there any more
    assert "stopped: server, sinks and the demo's files are gone" in out


def test_ctrl_c_ends_it_cleanly() -> None:
    process = subprocess.Popen(authdns_command("demo", "--seconds", "60"), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("DNS first" in line for line in list(lines)) or None, timeout=30)
        pid = int(re.search(r"authdns pid (\d+)", "".join(lines)).group(1))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        reader.join(timeout=5)
        assert "stopped: server, sinks and the demo's files are gone" in "".join(lines)
        wait_until(lambda: gone(pid) or None, timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
