"""NSD as a standard secondary of authdns: it transfers a zone (AXFR, RFC 5936) and, on
authdns's NOTIFY (RFC 1996), the new version by IXFR (RFC 1995): the differences only,
which NSD applies (authdns logs ``style=incremental``; NSD 4.6's log does not say).

NSD runs with ``request-xfr: 127.0.0.1@PORT NOKEY`` and ``allow-notify: 127.0.0.1
NOKEY``, no zone data of its own, no rate limiting; the zone's SOA refresh is 4 h, so a
new serial within seconds can only come from a NOTIFY.

Checks:

* NSD serves the zone (serial, records) after transferring it from authdns;
* after the zone file gets a new serial and a new record, NSD serves both within a few
  seconds: once with authdns run in this process (reload, then
  ``Notifier.zones_changed``), once end to end with ``authdns serve`` and a SIGHUP
  (needs serve/service.py to call ``zones_changed`` after each reload);
* a client on 127.0.0.2, not on the zone's allow list, is REFUSED (with a plain
  dnspython client: NSD cannot be told to transfer from another source address here).

Skipped when the ``nsd`` binary is absent.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import start_server, stop_server, wait_until
from nsd_support import HOST, NSD, server_lines
from inprocess import serve_in_process
from support import free_port, write_zone

from authdns.base.tsig import TsigSecret
from authdns.base import names
from authdns.transfer.notify import Notifier

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out


if NSD is None:
    pytest.skip("nsd is not installed (looked in PATH and /usr/sbin/nsd)", allow_module_level=True)

ORIGIN = "sec.test."
SERIAL = 2026010101
SECRET = bytes(range(1, 33))
SECRET_BASE64 = base64.b64encode(SECRET).decode()


def zone_text(notify_port: int, serial: int, extra: str = "", key: str | None = None) -> str:
    allow = "{from: 127.0.0.1, key: %s}" % key if key else "127.0.0.1"
    return f"""\
ttl: 300
transfer:
  allow: [{allow}]
  notify: ["127.0.0.1:{notify_port}"]
records:
  "@":
    SOA: {{serial: {serial}, refresh: 4h, retry: 1h}}
    NS: [ns1]
    MX: [10 mx1, 10 mx2]
  ns1: {{A: 192.0.2.1}}
  mx1: {{A: 192.0.2.11}}
  mx2: {{A: 192.0.2.12}}
{extra}"""


def many_hosts(count: int) -> str:
    """Enough names that the transfer spans several messages (each TSIG-signed)."""
    return "".join(f"  h{index:04d}: {{A: 10.{index // 250}.{index % 250}.1}}\n" for index in range(count))


def nsd_config(base: Path, port: int, master_port: int, key: str | None = None) -> str:
    lines = server_lines(base, port, base, verbosity=2)
    if key is not None:
        lines += ["key:", f"    name: {key}", "    algorithm: hmac-sha256", f"    secret: \"{SECRET_BASE64}\""]
    lines += [
        "zone:",
        f"    name: {ORIGIN}",
        f"    zonefile: {ORIGIN}zone",
        f"    request-xfr: {HOST}@{master_port} {key or 'NOKEY'}",
        f"    allow-notify: {HOST} {key or 'NOKEY'}",
    ]
    return "\n".join(lines) + "\n"


class SecondaryFailed(Exception):
    """NSD stopped, or was refused: waiting longer cannot help."""


@dataclass
class Secondary:
    process: subprocess.Popen
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def soa_serial(self) -> int | None:
        """The serial NSD serves, or None while it has no zone (SERVFAIL) or no answer."""
        try:
            reply = dns.query.udp(dns.message.make_query(ORIGIN, "SOA"), HOST, timeout=0.3, port=self.port)
        except (OSError, dns.exception.Timeout):
            return None
        if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            return None
        return reply.answer[0][0].serial

    def wait_for_serial(self, serial: int, timeout: float) -> None:
        def serves_serial() -> bool | None:
            if self.process.poll() is not None:
                raise SecondaryFailed(f"nsd exited:\n{self.log()}")
            if "received error code" in self.log():  # NSD would retry in minutes only
                raise SecondaryFailed(f"authdns refused NSD's transfer:\n{self.log()}")
            return True if self.soa_serial() == serial else None

        serves_serial.__name__ = f"NSD serves serial {serial}"
        try:
            wait_until(serves_serial, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}; NSD serves {self.soa_serial()}; its log:\n{self.log()}") from None

    def address_of(self, name: str) -> str | None:
        reply = dns.query.udp(dns.message.make_query(name, "A"), HOST, timeout=1, port=self.port)
        return reply.answer[0][0].address if reply.answer else None


def start_secondary(base: Path, port: int, master_port: int, key: str | None = None) -> Secondary:
    """``nsd -d`` as a secondary of 127.0.0.1@master_port, on ``port``."""
    base.mkdir(parents=True, exist_ok=True)
    config = base / "nsd.conf"
    config.write_text(nsd_config(base, port, master_port, key))
    process = subprocess.Popen([NSD, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Secondary(process, port, base / "nsd.log")


def stop_secondary(secondary: Secondary) -> None:
    """Stop the NSD we started, by its PID."""
    stop_server(secondary.process, grace=10.0)


@pytest.mark.parametrize("key", [None, "sec1"], ids=["nokey", "tsig"])
def test_nsd_follows_in_process_authdns(tmp_path: Path, key: str | None) -> None:
    """The TSIG variant also makes the zone span several messages, each signed, and
    NSD's allow-notify needs our NOTIFY signed."""
    nsd_port = free_port()
    extra = many_hosts(3500) if key else ""
    zone_file = write_zone(tmp_path / "zones", "sec.test", zone_text(nsd_port, SERIAL, extra, key))
    keys = {f"{key}.": TsigSecret("hmac-sha256", SECRET)} if key else {}
    with serve_in_process(tmp_path / "zones", notify_retry=0.2, notify_attempts=5, tsig_keys=keys) as authdns:
        notifier = authdns.loop.call(Notifier, authdns.config)
        secondary = start_secondary(tmp_path / "nsd", nsd_port, authdns.port, key)
        try:
            secondary.wait_for_serial(SERIAL, timeout=10)
            assert secondary.address_of("mx2.sec.test.") == "192.0.2.12"
            zone_file.write_text(zone_text(nsd_port, SERIAL + 1, extra + "  mx3: {A: 192.0.2.13}\n", key))
            authdns.reload()
            zone = authdns.holder.current.snapshot.zones[names.from_text(ORIGIN)]
            authdns.loop.call(notifier.zones_changed, [zone])
            secondary.wait_for_serial(SERIAL + 1, timeout=5)
            assert secondary.address_of("mx3.sec.test.") == "192.0.2.13"
            if key:
                assert secondary.address_of("h3499.sec.test.") == "10.13.249.1"
        finally:
            authdns.loop.run(notifier.close())
            stop_secondary(secondary)


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple]:
    """With two workers, NOTIFY must wait until the workers serve the new zone, or NSD's
    SOA query right after it meets the old serial and NSD stays behind."""
    nsd_port = free_port()
    zone_file = write_zone(tmp_path / "zones", "sec.test", zone_text(nsd_port, SERIAL))
    authdns = start_server(tmp_path / "zones", workers=request.param)
    try:
        yield authdns, zone_file, nsd_port
    finally:
        stop_server(authdns.process)


def test_nsd_follows_authdns_serve_after_sighup(served: tuple, tmp_path: Path) -> None:
    """Needs serve/service.py's wiring: a TransferResponder for DnsServer and Responder, and
    ``Notifier.zones_changed`` after each reload publishes."""
    authdns, zone_file, nsd_port = served
    secondary = start_secondary(tmp_path / "nsd", nsd_port, authdns.port)
    try:
        secondary.wait_for_serial(SERIAL, timeout=10)
        zone_file.write_text(zone_text(nsd_port, SERIAL + 1, "  mx3: {A: 192.0.2.13}\n"))
        os.kill(authdns.process.pid, signal.SIGHUP)  # the reload trigger that exists today
        secondary.wait_for_serial(SERIAL + 1, timeout=5)
        assert secondary.address_of("mx3.sec.test.") == "192.0.2.13"
        assert "notify acknowledged zone=sec.test." in authdns.log_text()
        # NSD asked IXFR from the serial it had and got the differences only (RFC 1995)
        assert f"type=IXFR serial={SERIAL + 1} from={SERIAL} style=incremental" in authdns.log_text()
    finally:
        stop_secondary(secondary)


def test_source_off_the_list_is_refused(served: tuple) -> None:
    authdns, _, _ = served
    query = dns.message.make_query(ORIGIN, dns.rdatatype.AXFR)
    reply = dns.query.tcp(query, authdns.host, timeout=3, port=authdns.port, source="127.0.0.2")
    assert reply.rcode() == dns.rcode.REFUSED and reply.answer == []
