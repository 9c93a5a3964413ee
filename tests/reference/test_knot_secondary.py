"""Knot DNS as a secondary of a real ``authdns serve``, everything TSIG-signed
(hmac-sha512): Knot's SOA refresh queries, its NOTIFY handling and its transfers.

authdns runs with ``--tsig-key`` and a zone whose transfers are allowed to 127.0.0.1
with that key only, and which notifies Knot. Knot has ``master:`` authdns with the key
and an ``acl`` that takes NOTIFY from it with the key. The zone's SOA refresh is 4 h, so
a new serial within seconds can only come from a NOTIFY.

Checks:

* Knot bootstraps the zone by AXFR and serves it;
* after the zone file changes twice (written in place; the watcher reloads it), Knot
  follows each change by IXFR ("IXFR, incoming ... finished" in its log, one AXFR only,
  no fallback to AXFR) and serves the new records and the changed TTL; authdns logs the transfers as
  ``style=incremental``;
* Knot's log has no TSIG complaint at all. (Measured: Knot 3.2.6 takes an unsigned
  answer to its signed SOA query without a word, so that its refresh queries are
  answered signed is shown by kdig and dnspython in tests/integration/test_tsig.py.)

Skipped when ``knotd`` is absent.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Iterator

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import ROOT, ServerProcess, start_server, stop_server, wait_until
from knot_support import HOST, KNOTD, server_lines, start_knot
from support import ExternalServer, free_port, write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

if KNOTD is None:
    pytest.skip("knotd is not installed (apt-get install knot)", allow_module_level=True)

ORIGIN = "knot.test."
SECRET = bytes(range(64))
SECRET_BASE64 = base64.b64encode(SECRET).decode()
KEY = "sec1"


def zone_text(notify_port: int, serial: int, extra: str = "", mx2_ttl: int = 300) -> str:
    return f"""\
ttl: 300
transfer:
  allow: [{{from: 127.0.0.1, key: {KEY}}}]
  notify: ["127.0.0.1:{notify_port}"]
records:
  "@":
    SOA: {{serial: {serial}, refresh: 4h, retry: 1h}}
    NS: [ns1]
    MX: [10 mx1, 10 mx2]
  ns1: {{A: 192.0.2.1}}
  mx1: {{A: 192.0.2.11}}
  mx2: {{A: {{ttl: {mx2_ttl}, records: [192.0.2.12]}}}}
  _25._tcp.mx1: {{TLSA: "3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"}}
{extra}""" + "".join(f"  h{index:03d}: {{A: 10.0.{index // 250}.{index % 250}}}\n" for index in range(300))


def knot_config(base: Path, port: int, primary_port: int) -> list[str]:
    return server_lines(base, port) + [
        "key:",
        f"  - id: {KEY}",
        "    algorithm: hmac-sha512",
        f"    secret: {SECRET_BASE64}",
        "remote:",
        "  - id: primary",
        f"    address: {HOST}@{primary_port}",
        f"    key: {KEY}",
        "acl:",
        "  - id: notify_from_primary",
        f"    address: {HOST}",
        f"    key: {KEY}",
        "    action: notify",
        "zone:",
        f"  - domain: {ORIGIN}",
        f'    storage: "{base / "zones"}"',
        "    master: primary",
        "    acl: notify_from_primary",
    ]


def served(knot: ExternalServer, name: str, rdtype: str) -> dns.message.Message | None:
    try:
        reply = dns.query.udp(dns.message.make_query(name, rdtype), HOST, port=knot.port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return None
    return reply if reply.rcode() == dns.rcode.NOERROR and reply.answer else None


def wait_for_serial(knot: ExternalServer, serial: int, timeout: float = 20.0) -> None:
    def serves_serial() -> bool | None:
        if knot.process.poll() is not None:
            raise AssertionError(f"knotd exited:\n{knot.log()}")
        reply = served(knot, ORIGIN, "SOA")
        return True if reply is not None and reply.answer[0][0].serial == serial else None

    serves_serial.__name__ = f"Knot serves serial {serial}"
    try:
        wait_until(serves_serial, timeout=timeout, interval=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}; Knot's log:\n{knot.log()}") from None


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[tuple[ServerProcess, int, Path]]:
    knot_port = free_port()
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, "knot.test", zone_text(knot_port, 1))
    shutil.copy(ROOT / "zones" / "example.test.yaml", zone_dir)  # start_server's readiness query asks it
    server = start_server(zone_dir, "--tsig-key", f"hmac-sha512:{KEY}:{SECRET_BASE64}", "--notify-retry", "0.5")
    try:
        yield server, knot_port, zone_dir
    finally:
        stop_server(server.process)


def test_knot_follows_changes_by_signed_ixfr(primary: tuple[ServerProcess, int, Path], tmp_path: Path) -> None:
    server, knot_port, zone_dir = primary
    knot = start_knot(tmp_path / "knot", knot_port, knot_config(tmp_path / "knot", knot_port, server.port))
    try:
        wait_for_serial(knot, 1)
        assert re.search(r"AXFR, incoming, remote 127\.0\.0\.1@\d+, finished", knot.log()), knot.log()

        write_zone(zone_dir, "knot.test", zone_text(knot_port, 2, "  new: {A: 198.51.100.7}\n"))
        wait_for_serial(knot, 2)
        write_zone(zone_dir, "knot.test", zone_text(knot_port, 3, "  new: {A: 198.51.100.8}\n", mx2_ttl=60))
        wait_for_serial(knot, 3)

        assert served(knot, f"new.{ORIGIN}", "A").answer[0][0].address == "198.51.100.8"
        assert served(knot, f"mx2.{ORIGIN}", "A").answer[0].ttl == 60
        assert served(knot, f"_25._tcp.mx1.{ORIGIN}", "TLSA") is not None
        log = knot.log()
        assert len(re.findall(r"IXFR, incoming, remote 127\.0\.0\.1@\d+, finished", log)) == 2, log
        updates = re.findall(r"refresh, remote 127\.0\.0\.1@\d+, zone updated, .*serial (\S+) -> (\d+)", log)
        assert updates == [("none", "1"), ("1", "2"), ("2", "3")], log
        assert "fallback to AXFR" not in log and len(re.findall(r"AXFR, incoming, .*finished", log)) == 1, log
        assert not [line for line in log.splitlines() if "TSIG" in line and re.search("fail|bad|error", line, re.I)]
        transfers = [line for line in server.log if "transfer zone=knot.test." in line]
        assert len(transfers) == 3 and all("tsig=sec1." in line for line in transfers), transfers
        assert ["style=incremental" in line for line in transfers] == [False, True, True], transfers
    finally:
        stop_server(knot.process, grace=10.0)
