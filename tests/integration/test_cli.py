"""The ``python -m authdns`` command as an operator meets it: usage errors, start-up
failures, the start-up log, and clean shutdown.

Checks:

* no arguments, an unknown flag, a bad ``--listen`` (not an address, port out of range,
  junk after ``[v6]``), and out-of-range ``--udp-payload`` / ``--tcp-idle-timeout`` /
  ``--tcp-max-connections`` → a usage message on stderr, exit 2, no "Traceback";
  ``--version`` prints the version and exits 0;
* ``serve`` with a missing zones directory (or a file in its place) → exit 1 and a
  message naming it; a listen address already taken → exit 1 and a "cannot listen"
  message; ``serve`` with the default listen addresses never shows a traceback (it
  either serves or says why it cannot bind);
* SIGTERM and SIGINT stop the server with exit 0 — also with a TCP client connected —
  and the log has one "zone loaded" line per zone with origin, records, serial (the
  file's mtime) and file, a "listening" line for the bound address, "ready" and
  "stopping";
* a zone directory where some files are broken (YAML syntax, a bad address) still serves
  the good zones; each broken file is reported as ``file:line:column: message`` and "zone
  not loaded", and its names are REFUSED; ``check`` reports the same positions and exits 1;
* an empty zone directory serves (everything REFUSED) and says so in the log.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import dns.rcode
import pytest

from authdns import __version__
from conftest import (ROOT, ServerProcess, authdns_command, fresh_state_dir, rrset_texts, run_authdns, start_server,
                      stop_server, wait_until)
from support import tcp_connect, tcp_exchange, query_wire, write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

SHIPPED_ORIGINS = {"example.test.", "example.net.", "2.0.192.in-addr.arpa."}


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


# ---------------------------------------------------------------- usage errors (exit 2)


@pytest.mark.parametrize("args", [
    [],
    ["--bogus"],
    ["serve", "--bogus"],
    ["nonsense-command"],
    ["serve", "--listen"],
    ["serve", "--listen", "nonsense"],
    ["serve", "--listen", "example.test:53"],
    ["serve", "--listen", "127.0.0.1:99999"],
    ["serve", "--listen", "127.0.0.1:-1"],
    ["serve", "--listen", "127.0.0.1:abc"],
    ["serve", "--listen", "256.0.0.1:53"],
    ["serve", "--listen", "[::1]x"],
    ["serve", "--listen", "[nonsense]:53"],
    ["serve", "--udp-payload", "100"],
    ["serve", "--udp-payload", "70000"],
    ["serve", "--udp-payload", "big"],
    ["serve", "--tcp-idle-timeout", "0"],
    ["serve", "--tcp-idle-timeout", "-1"],
    ["serve", "--tcp-idle-timeout", "nan"],
    ["serve", "--tcp-idle-timeout", "inf"],
    ["serve", "--tcp-idle-timeout", "soon"],
    ["serve", "--tcp-max-connections", "0"],
    ["serve", "--tcp-max-connections", "-3"],
    ["serve", "--tcp-max-connections", "many"],
    ["serve", "--log-level", "loud"],
    ["serve", "--workers", "0"],
    ["serve", "--workers", "257"],
    ["serve", "--workers", "many"],
    ["serve", "--loop", "fastest"],
], ids=lambda args: " ".join(args) or "no-arguments")
def test_usage_error_exit_2(args: list[str]) -> None:
    result = run_authdns(*args)
    assert result.returncode == 2, result.stderr
    assert "usage: authdns" in result.stderr
    assert "error:" in result.stderr
    assert_no_traceback(result)


def test_bad_listen_message_names_the_value() -> None:
    result = run_authdns("serve", "--listen", "127.0.0.1:99999")
    assert "--listen" in result.stderr and "99999" in result.stderr


def test_version() -> None:
    result = run_authdns("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"authdns {__version__}"


# ---------------------------------------------------------------- start-up failures (exit 1)


def test_missing_zone_dir_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-zones"
    result = run_authdns("serve", "--zones", str(missing), "--listen", "127.0.0.1:0")
    assert result.returncode == 1
    assert str(missing) in result.stderr and "does not exist" in result.stderr
    assert_no_traceback(result)


def test_zone_dir_is_a_file_exit_1(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "zones"
    not_a_dir.write_text("records: {}\n")
    result = run_authdns("serve", "--zones", str(not_a_dir), "--listen", "127.0.0.1:0")
    assert result.returncode == 1
    assert str(not_a_dir) in result.stderr
    assert_no_traceback(result)


def test_address_in_use_exit_1(shipped_server: ServerProcess) -> None:
    result = run_authdns("serve", "--zones", str(shipped_server.zone_dir), "--listen", f"127.0.0.1:{shipped_server.port}")
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and str(shipped_server.port) in result.stderr
    assert "ready port=" not in result.stderr
    assert_no_traceback(result)
    # The first server is unharmed.
    assert shipped_server.query("example.test", "SOA").rcode() == dns.rcode.NOERROR


def test_default_listen_addresses_no_traceback(zone_dir: Path) -> None:
    """Without ``--listen`` the server binds 127.0.0.1:5353 and [::1]:5353 (loopback
    only). Either it serves, or the port is taken and it exits 1 saying so. Regression:
    this crashed with a TypeError (a slots dataclass's class attribute is not its default)."""
    command = authdns_command("serve", "--zones", zone_dir, "--state-dir", fresh_state_dir(zone_dir))
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        def started_or_exited() -> str | None:
            if any("ready port=" in line for line in list(lines)):
                return "ready"
            return "exited" if process.poll() is not None else None

        outcome = wait_until(started_or_exited, timeout=15.0)
        if outcome == "ready":
            assert any("ready port=5353" in line for line in lines)
            stop_server(process)
            assert process.returncode == 0
        else:
            assert process.returncode == 1
        reader.join(timeout=5)
        text = "".join(lines)
        assert "Traceback" not in text, text
        if outcome == "exited":
            assert "cannot listen" in text, text
    finally:
        stop_server(process)


# ---------------------------------------------------------------- start-up log and shutdown


def zone_loaded_lines(server: ServerProcess) -> dict[str, dict[str, str]]:
    found = {}
    for line in server.log:
        match = re.search(r"zone loaded origin=(\S+) records=(\d+) serial=(\d+) file=(\S+)", line)
        if match:
            origin, records, serial, path = match.groups()
            assert origin not in found, f"zone {origin} logged twice"
            found[origin] = {"records": records, "serial": serial, "file": path}
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_and_log(zone_dir: Path, signum: int) -> None:
    started = time.time()
    server = start_server(zone_dir)
    try:
        loaded = zone_loaded_lines(server)
        assert set(loaded) == SHIPPED_ORIGINS
        for origin, fields in loaded.items():
            path = Path(fields["file"])
            assert path.parent == zone_dir and path.name == f"{origin[:-1]}.yaml"
            # Generated (no serial in the file): the time of the first load of this content.
            assert started - 5 <= int(fields["serial"]) <= time.time() + 1
            assert int(fields["records"]) > 0
        assert int(loaded["example.test."]["records"]) > int(loaded["example.net."]["records"])
        listening = [line for line in server.log if "listening udp+tcp" in line]
        assert len(listening) == 1 and listening[0].endswith(f"127.0.0.1:{server.port}")
        assert sum("ready port=" in line for line in server.log) == 1
        # A client holding a TCP connection open must not keep the server from stopping.
        with tcp_connect(server.host, server.port, timeout=5.0) as sock:
            tcp_exchange(sock, query_wire("example.test", "A"))
            os.kill(server.process.pid, signum)
            server.process.wait(timeout=10)
        assert server.process.returncode == 0
        server.wait_for_log(r"\bstopping\b")
        assert "Traceback" not in server.log_text()
        assert not [line for line in server.log if " ERROR " in line]
    finally:
        stop_server(server.process)


# ---------------------------------------------------------------- broken zone files

BAD_ADDRESS = """\
records:
  "@":
    SOA: {rname: hostmaster}
    NS: [ns1]
  ns1: {A: 192.0.2.1}
  www: {A: 300.1.2.3}
"""
BAD_SYNTAX = """\
records:
  "@":
    NS: [ns1
  x: 1
"""


@pytest.fixture
def half_broken_zone_dir(zone_dir: Path) -> tuple[Path, Path, Path]:
    bad_address = write_zone(zone_dir, "bad-address.test", BAD_ADDRESS)
    bad_syntax = write_zone(zone_dir, "bad-syntax.test", BAD_SYNTAX)
    return zone_dir, bad_address, bad_syntax


def test_broken_zone_files_do_not_stop_the_others(half_broken_zone_dir, server_factory) -> None:
    zone_dir, bad_address, bad_syntax = half_broken_zone_dir
    server = server_factory(zone_dir)
    assert set(zone_loaded_lines(server)) == SHIPPED_ORIGINS
    assert re.search(rf"{re.escape(str(bad_address))}:6:12: .*300\.1\.2\.3", server.log_text())
    assert re.search(rf"{re.escape(str(bad_syntax))}:4:4: YAML syntax", server.log_text())
    for path in (bad_address, bad_syntax):
        assert f"zone not loaded file={path}" in server.log_text()
    assert rrset_texts(server.query("example.test", "A").answer) == {"example.test. 3600 IN A 192.0.2.10"}
    assert server.query("ns1.bad-address.test", "A").rcode() == dns.rcode.REFUSED
    assert server.query("bad-syntax.test", "SOA").rcode() == dns.rcode.REFUSED
    assert "ready port=" in server.log_text() and "zones=3" in server.log_text()
    assert "Traceback" not in server.log_text()


def test_check_reports_positions(half_broken_zone_dir) -> None:
    zone_dir, bad_address, bad_syntax = half_broken_zone_dir
    result = run_authdns("check", str(zone_dir))
    assert result.returncode == 1
    assert f"{bad_address}:6:12:" in result.stdout
    assert f"{bad_syntax}:4:4:" in result.stdout
    assert "5 file(s) checked: 2 error(s)" in result.stderr
    assert_no_traceback(result)
    good = run_authdns("check", str(ROOT / "zones"))
    assert good.returncode == 0, good.stdout + good.stderr


def test_check_refuses_two_files_for_one_origin(tmp_path: Path) -> None:
    """`check DIR` applies serve's rule: file names are compared without case or a
    trailing dot, so `Example.test.yaml` beside `example.test.yaml` is an error naming
    both (serve ignores it), and the plainly named file is the one checked."""
    zones = tmp_path / "zones"
    zones.mkdir()
    shutil.copy(ROOT / "zones" / "example.test.yaml", zones / "example.test.yaml")
    (zones / "Example.test.yaml").write_text("not: [a zone\n")
    (zones / "example.test..yaml").write_text("soa: {}\n")
    result = run_authdns("check", str(zones))
    assert result.returncode == 1, result.stdout + result.stderr
    for variant in ("Example.test.yaml", "example.test..yaml"):
        assert re.search(rf"{re.escape(str(zones / variant))}:1:1: zone example\.test\. is already named by "
                         rf"{re.escape(str(zones / 'example.test.yaml'))}", result.stdout), result.stdout
    assert "YAML syntax" not in result.stdout  # the ignored file is not read
    assert "3 file(s) checked: 2 error(s)" in result.stderr
    assert_no_traceback(result)


def test_empty_zone_dir_serves_refused(tmp_path: Path, server_factory) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    server = server_factory(empty)
    assert "no zones loaded" in server.log_text()
    response = server.query("example.test", "SOA")
    assert response.rcode() == dns.rcode.REFUSED
    assert "zones=0" in server.log_text()
