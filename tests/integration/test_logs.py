"""Logs: ``--log-format json`` (one JSON object per line) and the query log, switched at
runtime with ``authdns ctl querylog on|off`` or on from the start with ``--query-log``.

Checks: every line of a JSON-logging server (workers included) parses, with time, level,
logger and message, and workers' lines carry their slot and pid; a query log line names
the client, transport, name, type, rcode, kind (answer, NXDOMAIN, referral, NODATA) and first answer, over UDP and TCP; once `ctl
querylog off` has returned, no query is logged, in one process or across workers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ServerProcess, run_authdns, start_server, stop_server, wait_until


def ctl(server: ServerProcess, *args: str) -> str:
    result = run_authdns("ctl", "--state-dir", server.state_dir, *args, timeout=15)
    assert result.returncode == 0, result.stderr
    return result.stdout


def query_lines(server: ServerProcess, name: str) -> list[str]:
    return [line for line in list(server.log) if f"name={name}" in line]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_query_log_switched_at_runtime(zone_dir: Path, workers: int) -> None:
    server = start_server(zone_dir, workers=workers)
    try:
        server.query("pool.example.test", "MX")
        assert ctl(server, "querylog", "on").strip() == "query log on"
        server.query("pool.example.test", "MX")
        server.query("nope.example.test", "A", tcp=True)
        server.query("host.lab.example.test", "A")
        server.query("mail.example.test", "TXT")
        udp = wait_until(lambda: query_lines(server, "pool.example.test.") or None)
        assert re.search(r"query client=127\.0\.0\.1#\d+ via=UDP name=pool\.example\.test\. type=MX rcode=NOERROR "
                         r"kind=answer first=MX 10 mx\d\.example\.test\.", udp[0]), udp
        tcp = wait_until(lambda: query_lines(server, "nope.example.test.") or None)
        assert re.search(r"via=TCP name=nope\.example\.test\. type=A rcode=NXDOMAIN kind=nxdomain first=-", tcp[0]), tcp
        referral = wait_until(lambda: query_lines(server, "host.lab.example.test.") or None)
        assert re.search(r"type=A rcode=NOERROR kind=referral first=-", referral[0]), referral
        nodata = wait_until(lambda: query_lines(server, "mail.example.test.") or None)
        assert re.search(r"type=TXT rcode=NOERROR kind=nodata first=-", nodata[0]), nodata
        assert len(udp) == 1, "the query before `on` was not logged"
        ctl(server, "querylog", "off")
        for _ in range(20):  # fresh source ports: every worker's turn
            server.query("after-off.example.test", "A")
        ctl(server, "querylog", "on")
        server.query("marker.example.test", "A")
        wait_until(lambda: query_lines(server, "marker.example.test.") or None)
        assert not query_lines(server, "after-off.example.test.")
    finally:
        stop_server(server.process)


def test_json_logs_and_query_log_from_the_start(zone_dir: Path) -> None:
    server = start_server(zone_dir, "--log-format", "json", "--query-log", workers=2)
    try:
        server.query("example.test", "MX")
        wait_until(lambda: any("type=MX" in line for line in list(server.log)) or None)
        entries = [json.loads(line) for line in list(server.log)]  # every line is one JSON object
        for entry in entries:
            assert set(entry) >= {"time", "level", "logger", "message"}, entry
        assert any(entry["message"].startswith("ready port=") for entry in entries)
        logged = next(entry for entry in entries if entry["logger"] == "authdns.queries" and "type=MX" in entry["message"])
        assert logged["worker"] in (0, 1) and isinstance(logged["pid"], int)
        assert "name=example.test. type=MX rcode=NOERROR kind=answer first=MX 20 mail.example.test." in logged["message"]
    finally:
        stop_server(server.process)
