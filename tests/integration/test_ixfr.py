"""IXFR with real differences (RFC 1995), dnspython as the secondary applying them.

The zone changes twice by editing its file and reloading (records added, removed, an
RRset's TTL and one of its addresses changed, a whole name gone). Checks:

* an IXFR from either older serial gets only the differences, framed as RFC 1995 §4
  says (new SOA, then per step old SOA, deletions, new SOA, additions, new SOA), and
  dnspython applying them to its copy of that version ends with exactly the zone an
  AXFR gives now, TTLs included; signed with TSIG every message verifies;
* a serial the history does not hold, a history cut short by ``ixfr_history``, a
  serial that went down, and a change larger than the zone all get the whole zone;
* with ``ixfr_history=0`` nothing is kept;
* a reload that changes no record (a comment added) keeps the history; one that changes
  records under the same serial empties it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Iterator

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.xfr
import dns.zone
import pytest

from inprocess import InProcessServer, serve_in_process
from support import write_zone

from authdns.zones.transferspec import AllowRule
from authdns.base.tsig import TsigSecret


ORIGIN = "inc.test."
SECRET = bytes(range(40, 72))
KEY = dns.tsig.Key("inc-key.", SECRET, "hmac-sha512")

VERSIONS = {
    1: """\
  "@": {SOA: {serial: 1}, NS: [ns1], MX: [10 mx1, 20 mx2]}
  ns1: {A: 192.0.2.53}
  mx1: {A: [192.0.2.1, 192.0.2.2]}
  mx2: {A: 192.0.2.3}
  www: {A: 192.0.2.80, TXT: "old text"}
  gone: {A: 192.0.2.99}
""" + "".join(f"  host{index:02d}: {{A: 198.51.100.{index}}}\n" for index in range(20)),
    2: """\
  "@": {SOA: {serial: 2}, NS: [ns1], MX: [10 mx1, 20 mx2]}
  ns1: {A: 192.0.2.53}
  mx1: {A: [192.0.2.1, 192.0.2.4]}
  mx2: {A: {ttl: 60, records: [192.0.2.3]}}
  www: {A: 192.0.2.80, TXT: "new text"}
  _25._tcp.mx1: {TLSA: "3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"}
""" + "".join(f"  host{index:02d}: {{A: 198.51.100.{index}}}\n" for index in range(20)),
    3: """\
  "@": {SOA: {serial: 3}, NS: [ns1], MX: [10 mx1, 20 mx2, 30 mx3]}
  ns1: {A: 192.0.2.53}
  mx1: {A: [192.0.2.1, 192.0.2.4]}
  mx2: {A: {ttl: 60, records: [192.0.2.3]}}
  mx3: {A: 192.0.2.5, AAAA: "2001:db8::5"}
  www: {A: 192.0.2.80, TXT: "new text"}
  _25._tcp.mx1: {TLSA: "3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"}
""" + "".join(f"  host{index:02d}: {{A: 198.51.100.{index}}}\n" for index in range(20)),
}


def zone_text(version: int, serial: int | None = None) -> str:
    body = VERSIONS[version]
    if serial is not None:
        body = body.replace(f"serial: {version}", f"serial: {serial}", 1)
    return "ttl: 300\ntransfer: {allow: [127.0.0.1]}\nrecords:\n" + body


@pytest.fixture
def zone_dir(tmp_path: Path) -> Path:
    target = tmp_path / "zones"
    write_zone(target, "inc.test", zone_text(1))
    return target


def serve(zone_dir: Path, **config) -> Iterator[InProcessServer]:
    keys = {"inc-key.": TsigSecret("hmac-sha512", SECRET)}
    with serve_in_process(zone_dir, tsig_keys=keys, **config) as running:
        yield running


@pytest.fixture
def server(zone_dir: Path) -> Iterator[InProcessServer]:
    yield from serve(zone_dir)


def change_to(server: InProcessServer, zone_dir: Path, version: int, serial: int | None = None) -> None:
    write_zone(zone_dir, "inc.test", zone_text(version, serial))
    server.reload()


def axfr(server: InProcessServer) -> dns.zone.Zone:
    return dns.zone.from_xfr(dns.query.xfr(server.host, ORIGIN, port=server.port, timeout=5, lifetime=10,
                                           relativize=False), relativize=False)


def ixfr_messages(server: InProcessServer, serial: int, signed: bool = False) -> list[dns.message.Message]:
    keys = dict(keyring={KEY.name: KEY}, keyname=KEY.name, keyalgorithm=KEY.algorithm) if signed else {}
    return list(dns.query.xfr(server.host, ORIGIN, rdtype=dns.rdatatype.IXFR, serial=serial, port=server.port,
                              timeout=5, lifetime=10, relativize=False, **keys))


def sequence(messages: list[dns.message.Message]) -> list[tuple[str, str, str]]:
    """Every record as (owner, type, rdata), in the order sent."""
    return [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
            for message in messages for rrset in message.answer for rdata in rrset]


def soa_serials(messages: list[dns.message.Message]) -> list[int]:
    return [rdata.serial for message in messages for rrset in message.answer if rrset.rdtype == dns.rdatatype.SOA
            for rdata in rrset]


def apply_ixfr(server: InProcessServer, start: dns.zone.Zone) -> dns.zone.Zone:
    """dnspython as a secondary holding ``start``: it asks IXFR from its serial and applies
    what it gets (a full zone, too, when the server sends one)."""
    query, serial = dns.xfr.make_query(start)
    dns.query.inbound_xfr(server.host, start, query, port=server.port, timeout=5, lifetime=10)
    return start


def test_ixfr_from_each_older_serial_sends_the_differences(server: InProcessServer, zone_dir: Path) -> None:
    first = axfr(server)
    change_to(server, zone_dir, 2)
    second = axfr(server)
    change_to(server, zone_dir, 3)
    third = axfr(server)

    messages = ixfr_messages(server, 1)
    assert soa_serials(messages) == [3, 1, 2, 2, 3, 3], "RFC 1995 §4: new SOA, then per step old SOA ... new SOA"
    sent = sequence(messages)
    assert ("gone.inc.test.", "A", "192.0.2.99") in sent and ("mx1.inc.test.", "A", "192.0.2.2") in sent
    assert ("host00.inc.test.", "A", "198.51.100.0") not in sent, "unchanged records stay out"
    assert len(sent) < 20
    assert apply_ixfr(server, first) == third
    assert apply_ixfr(server, second) == third
    assert soa_serials(ixfr_messages(server, 2)) == [3, 2, 3, 3]


def test_a_changed_ttl_reaches_the_secondary(server: InProcessServer, zone_dir: Path) -> None:
    first = axfr(server)
    change_to(server, zone_dir, 2)
    updated = apply_ixfr(server, first)
    mx2 = updated.find_rdataset("mx2.inc.test.", "A")
    assert mx2.ttl == 60 and updated == axfr(server)


def test_signed_ixfr_verifies_every_message(server: InProcessServer, zone_dir: Path) -> None:
    change_to(server, zone_dir, 2)
    messages = ixfr_messages(server, 1, signed=True)  # dnspython verifies each MAC, chained
    assert messages and all(message.had_tsig for message in messages)
    assert soa_serials(messages) == [2, 1, 2, 2]


def test_an_unknown_serial_gets_the_whole_zone(server: InProcessServer, zone_dir: Path) -> None:
    change_to(server, zone_dir, 2)
    messages = ixfr_messages(server, 0)  # older than any step kept
    assert soa_serials(messages) == [2, 2], "AXFR form: SOA first and last only"
    assert ("host00.inc.test.", "A", "198.51.100.0") in sequence(messages)


def test_a_serial_that_went_down_forgets_the_history(server: InProcessServer, zone_dir: Path) -> None:
    change_to(server, zone_dir, 2)
    change_to(server, zone_dir, 3, serial=1)  # a step back: no secondary can follow it by IXFR
    change_to(server, zone_dir, 2, serial=4)
    query = dns.message.make_query(ORIGIN, "IXFR")
    query.authority.append(dns.rrset.from_text(ORIGIN, 300, "IN", "SOA", "ns1.inc.test. hostmaster.inc.test. 2 3600 600 86400 300"))
    reply = dns.query.tcp(query, server.host, port=server.port, timeout=5, one_rr_per_rrset=True)  # one message
    assert [rrset[0].serial for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SOA] == [4, 4]
    assert len(reply.answer) > 20, "the whole zone"


def test_a_reload_with_the_same_records_keeps_the_history(server: InProcessServer, zone_dir: Path) -> None:
    change_to(server, zone_dir, 2)
    write_zone(zone_dir, "inc.test", "# a comment moves every line down\n" + zone_text(2))
    server.reload()
    assert soa_serials(ixfr_messages(server, 1)) == [2, 1, 2, 2], "still incremental"
    write_zone(zone_dir, "inc.test", zone_text(2).replace("new text", "edited, serial kept"))
    server.reload()
    assert soa_serials(ixfr_messages(server, 1)) == [2, 2], "records changed under one serial: whole zone"


def test_a_change_larger_than_the_zone_is_sent_whole(server: InProcessServer, zone_dir: Path) -> None:
    replaced = "ttl: 300\ntransfer: {allow: [127.0.0.1]}\nrecords:\n" + "".join(
        f"  new{index:02d}: {{A: 203.0.113.{index}}}\n" for index in range(30)) + \
        '  "@": {SOA: {serial: 2}, NS: [ns1]}\n  ns1: {A: 192.0.2.54}\n'
    write_zone(zone_dir, "inc.test", replaced)
    server.reload()
    assert soa_serials(ixfr_messages(server, 1)) == [2, 2]


@pytest.mark.parametrize("history,incremental_from", [(1, {2}), (0, set())])
def test_the_history_keeps_the_last_n_changes(zone_dir: Path, history: int, incremental_from: set[int]) -> None:
    for server in serve(zone_dir, ixfr_history=history):
        change_to(server, zone_dir, 2)
        change_to(server, zone_dir, 3)
        for serial in (1, 2):
            incremental = soa_serials(ixfr_messages(server, serial))[1] == serial
            assert incremental == (serial in incremental_from), serial


def test_transfers_still_obey_the_allow_list(zone_dir: Path) -> None:
    write_zone(zone_dir, "inc.test", zone_text(1).replace("allow: [127.0.0.1]", "allow: [127.0.0.9]"))
    for server in serve(zone_dir, allow_transfer=(AllowRule(ipaddress.ip_network("127.0.0.8/32")),)):
        write_zone(zone_dir, "inc.test", zone_text(2).replace("allow: [127.0.0.1]", "allow: [127.0.0.9]"))
        server.reload()
        with pytest.raises(dns.xfr.TransferError):
            ixfr_messages(server, 1)
