"""Zone transfers out (transfer/zonetransfer.py): AXFR (RFC 5936), IXFR of a zone without history
(answered in full, RFC 1995 §4; the differences are test_ixfr.py's), access rules and
TSIG (RFC 8945), with dnspython as the secondary.

Checks, against a server running in this process (``tests/inprocess.py``: the TSIG keys
and ``allow_transfer`` are server settings the command line gets from cli/commands.py):

* AXFR from an allowed address gets the whole zone, equal to what ``authdns export``
  writes, SOA first and last, AA set, one message for a small zone;
* a source not on the list (127.0.0.2) gets REFUSED, with EDE 18 Prohibited when the
  query had EDNS and no OPT when it had none; a name that is no zone's apex gets
  REFUSED with EDE 20 Not Authoritative; a zone without ``transfer:`` is closed;
* the server-wide allow rule opens every zone to its address only;
* IXFR with an older serial gets the full zone (AXFR-style), with the current serial a
  single SOA; over UDP, AXFR is REFUSED and an allowed IXFR gets the SOA only (RFC 1995
  §2: come back over TCP) while a disallowed one is REFUSED;
* TSIG: a rule with a key admits requests signed with that key, and every reply message
  verifies (dnspython checks each MAC, chained over a multi-message transfer); unsigned
  or signed with another known key: REFUSED, signed; an unknown key: NOTAUTH with TSIG
  error BADKEY and an empty MAC; a wrong secret: NOTAUTH/BADSIG; a MAC made 1000 s ago:
  NOTAUTH/BADTIME, signed, with our clock; also when the request states a huge fudge
  (the window is min(its fudge, 300 s)), and when an old signed request is replayed;
* TSIG MAC sizes (RFC 8945 §5.2.2.1): a MAC truncated to 16 octets that verifies gets
  NOTAUTH/BADTRUNC, signed (our policy: no truncation); 0, 8 or 33 octets: FORMERR;
* IXFR whose authority SOA is owned by another name is not "current": the full zone;
  an IXFR over UDP whose SOA does not fit 512 octets gets TC;
* 5000 records span several messages (the two-octet TCP length caps each at 64 KiB),
  question in the first only, and arrive complete, signed or not;
* a zone version is packed once (reused while it is current), a new version again, and
  the cache keeps RENDER_CACHE_ZONES zones;
* a reload's new serial and records are what the next transfer sends;
* allow rules naming a key the server lacks are reported (``unknown_keys``);
* end to end with ``authdns serve`` (zone-level ``transfer:``, needs serve/service.py to
  hand DnsServer a TransferResponder): allowed AXFR, refused from 127.0.0.2.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.renderer
import dns.rrset
import dns.tsig
import dns.xfr
import dns.zone
import pytest

from conftest import ServerProcess, run_authdns, start_server, stop_server
from inprocess import InProcessServer, serve_in_process
from support import frame, signed_wire, tcp_read_message, write_zone

from authdns.base.tsig import TsigSecret
from authdns.base import names
from authdns.transfer.zonetransfer import RENDER_CACHE_ZONES
from authdns.transfer.access import unknown_keys
from authdns.zones.transferspec import AllowRule

SECRET = bytes(range(1, 33))
OTHER_SECRET = bytes(range(101, 133))
KEYRING = {dns.name.from_text("sec1."): dns.tsig.Key("sec1.", SECRET, dns.tsig.HMAC_SHA256)}
BIG_COUNT = 5000
SERIAL = 2026010101

XFR_ZONE = f"""\
ttl: 300
transfer:
  allow: [127.0.0.1, {{from: 127.0.0.3, key: sec1}}]
records:
  "@":
    SOA: {{serial: {SERIAL}}}
    NS: [ns1, ns.sub]
    MX: [10 mx1, 10 mx2]
    TXT: ["v=spf1 mx -all", [two, strings]]
    CAA: 0 issue "letsencrypt.org"
  ns1: {{A: 192.0.2.1}}
  mx1: {{A: 192.0.2.11}}
  mx2: {{A: [192.0.2.12, 192.0.2.13], AAAA: "2001:db8::12"}}
  www: {{CNAME: "@"}}
  _sip._tcp: {{SRV: 0 5 5060 mx1}}
  "*.users": {{A: 192.0.2.80}}
  sub: {{NS: [ns.sub]}}
  ns.sub: {{A: 192.0.2.53}}
"""

CLOSED_ZONE = """\
records:
  "@": {SOA: {serial: 7}, NS: [ns1]}
  ns1: {A: 192.0.2.1}
"""


LONG_NAME = ".".join(chr(ord("a") + index) * 55 for index in range(4)) + ".example.net."  # 237 octets
LONG_SOA_ZONE = f"""\
transfer: {{allow: [127.0.0.1]}}
records:
  "@": {{SOA: {{serial: 9, mname: "ns.{LONG_NAME}", rname: "hostmaster.{LONG_NAME}"}}, NS: [ns1]}}
  ns1: {{A: 192.0.2.1}}
"""


def big_zone() -> str:
    lines = ["ttl: 300", "transfer: {allow: [127.0.0.1]}", "records:", '  "@": {SOA: {serial: 1}, NS: [ns1]}',
             "  ns1: {A: 192.0.2.1}"]
    lines += [f"  h{index:04d}: {{A: 10.{index // 250}.{index % 250}.1}}" for index in range(BIG_COUNT)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def zone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("transfer") / "zones"
    write_zone(target, "xfr.test", XFR_ZONE)
    write_zone(target, "closed.test", CLOSED_ZONE)
    write_zone(target, "big.test", big_zone())
    write_zone(target, "long.test", LONG_SOA_ZONE)
    return target


@pytest.fixture(scope="module")
def server(zone_dir: Path) -> Iterator[InProcessServer]:
    keys = {"sec1.": TsigSecret("hmac-sha256", SECRET), "sec2.": TsigSecret("hmac-sha256", OTHER_SECRET)}
    with serve_in_process(zone_dir, tsig_keys=keys,
                          allow_transfer=(AllowRule(ipaddress.ip_network("127.0.0.4/32")),)) as running:
        yield running


def exported(zone_file: Path, origin: str) -> dns.zone.Zone:
    """The zone as ``authdns export`` writes it: what a secondary must end up with."""
    result = run_authdns("export", zone_file, timeout=30, check=True)
    return dns.zone.from_text(result.stdout, origin=origin, relativize=False)


def transfer(server: InProcessServer, origin: str, *, source: str = "127.0.0.1", keyring=None,
             keyname: str | None = None, rdtype=dns.rdatatype.AXFR, serial: int = 0) -> list[dns.message.Message]:
    return list(dns.query.xfr(server.host, origin, rdtype=rdtype, port=server.port, source=source, timeout=5,
                              lifetime=10, relativize=False, keyring=keyring, keyname=keyname, serial=serial))


def tcp_query(server: InProcessServer, origin: str, rdtype: str = "AXFR", *, source: str = "127.0.0.1",
              udp: bool = False, **kwargs) -> dns.message.Message:
    query = dns.message.make_query(origin, rdtype, **kwargs)
    if udp:
        return dns.query.udp(query, server.host, timeout=3, port=server.port, source=source)
    return dns.query.tcp(query, server.host, timeout=3, port=server.port, source=source)


def as_zone(messages: list[dns.message.Message], origin: str) -> dns.zone.Zone:
    zone = dns.zone.Zone(origin, relativize=False)
    with zone.writer(replacement=True) as txn:
        for message in messages:
            for rrset in message.answer:
                txn.add(rrset)
    return zone


def records(messages: list[dns.message.Message]) -> list[tuple[str, str]]:
    return [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)) for m in messages for rrset in m.answer
            for _ in rrset]


def ede_codes(message: dns.message.Message) -> list[int]:
    return [option.code for option in message.options if option.otype == dns.edns.OptionType.EDE]


# ---------------------------------------------------------------- AXFR


@pytest.mark.slow
def test_axfr_gets_the_whole_zone(server: InProcessServer, zone_dir: Path) -> None:
    messages = transfer(server, "xfr.test.")
    assert len(messages) == 1
    sequence = records(messages)
    assert sequence[0] == sequence[-1] == ("xfr.test.", "SOA"), "RFC 5936 §2.2: SOA first and last"
    assert [rrtype for _, rrtype in sequence].count("SOA") == 2
    assert messages[0].flags & dns.flags.AA and messages[0].question[0].rdtype == dns.rdatatype.AXFR
    received = dns.zone.from_xfr(iter(messages), relativize=False)
    assert received == exported(zone_dir / "xfr.test.yaml", "xfr.test.")
    assert ("ns.sub.xfr.test.", "A") in sequence, "glue below the cut goes with the zone"


def test_source_not_on_the_list_is_refused(server: InProcessServer) -> None:
    with_edns = tcp_query(server, "xfr.test.", source="127.0.0.2", use_edns=0)
    assert with_edns.rcode() == dns.rcode.REFUSED and with_edns.answer == []
    assert ede_codes(with_edns) == [18], "EDE 18 Prohibited (RFC 8914 §4.19)"
    plain = tcp_query(server, "xfr.test.", source="127.0.0.2")
    assert plain.rcode() == dns.rcode.REFUSED and plain.edns < 0
    with pytest.raises(dns.xfr.TransferError):
        transfer(server, "xfr.test.", source="127.0.0.2")


def test_zone_without_transfer_block_is_closed(server: InProcessServer) -> None:
    assert tcp_query(server, "closed.test.").rcode() == dns.rcode.REFUSED


def test_not_a_zone_apex(server: InProcessServer) -> None:
    for name in ("www.xfr.test.", "nothere.example."):
        reply = tcp_query(server, name, use_edns=0)
        assert reply.rcode() == dns.rcode.REFUSED and ede_codes(reply) == [20], name


def test_server_wide_rule_opens_every_zone_to_its_address(server: InProcessServer) -> None:
    messages = transfer(server, "closed.test.", source="127.0.0.4")
    assert records(messages)[0] == records(messages)[-1] == ("closed.test.", "SOA")
    assert tcp_query(server, "closed.test.", source="127.0.0.2").rcode() == dns.rcode.REFUSED


def test_ordinary_queries_still_answered(server: InProcessServer) -> None:
    for udp in (False, True):
        reply = tcp_query(server, "mx1.xfr.test.", "A", udp=udp)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer[0][0].address == "192.0.2.11"


# ---------------------------------------------------------------- IXFR and UDP


def test_ixfr_with_older_serial_gets_the_full_zone(server: InProcessServer, zone_dir: Path) -> None:
    zone = dns.zone.Zone("xfr.test.", relativize=False)
    query, _ = dns.xfr.make_query(zone, serial=SERIAL - 1)
    dns.query.inbound_xfr(server.host, zone, query, port=server.port, timeout=5, lifetime=10)
    assert zone == exported(zone_dir / "xfr.test.yaml", "xfr.test.")


def test_ixfr_with_current_serial_gets_one_soa(server: InProcessServer) -> None:
    messages = transfer(server, "xfr.test.", rdtype=dns.rdatatype.IXFR, serial=SERIAL)
    assert records(messages) == [("xfr.test.", "SOA")]
    assert messages[0].answer[0][0].serial == SERIAL


def test_ixfr_soa_owned_by_another_name_is_not_current(server: InProcessServer) -> None:
    """RFC 1995 §3: the authority SOA is the client's version of *this* zone; an SOA of
    another name says nothing about it, however high its serial."""
    query = dns.message.make_query("xfr.test.", "IXFR")
    soa = dns.rrset.from_text("other.test.", 0, "IN", "SOA", f"ns1.other.test. h.other.test. {SERIAL + 5} 1 1 1 1")
    query.authority.append(soa)
    reply = dns.query.tcp(query, server.host, timeout=3, port=server.port)
    assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) > 1, "the full zone, not one SOA"


def test_udp_ixfr_too_large_for_512_is_truncated(server: InProcessServer) -> None:
    zone = dns.zone.Zone("long.test.", relativize=False)
    query, _ = dns.xfr.make_query(zone, serial=1)
    reply = dns.query.udp(query, server.host, timeout=3, port=server.port)
    assert reply.flags & dns.flags.TC and reply.answer == [] and reply.rcode() == dns.rcode.NOERROR
    query.use_edns(0, payload=1232)
    reply = dns.query.udp(query, server.host, timeout=3, port=server.port)
    assert not reply.flags & dns.flags.TC and reply.answer[0].rdtype == dns.rdatatype.SOA


def test_udp_axfr_refused(server: InProcessServer) -> None:
    reply = tcp_query(server, "xfr.test.", udp=True, use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED and ede_codes(reply) == [18]


def test_udp_ixfr_gets_the_soa_only(server: InProcessServer) -> None:
    """RFC 1995 §2: the full answer does not fit a datagram; the SOA alone sends the
    client to TCP (dnspython raises UseTCP on it)."""
    zone = dns.zone.Zone("xfr.test.", relativize=False)
    query, _ = dns.xfr.make_query(zone, serial=SERIAL - 1)
    reply = dns.query.udp(query, server.host, timeout=3, port=server.port)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert [(rrset.rdtype, rrset[0].serial) for rrset in reply.answer] == [(dns.rdatatype.SOA, SERIAL)]
    with pytest.raises(dns.xfr.UseTCP):
        dns.query.inbound_xfr(server.host, zone, query, port=server.port, timeout=3,
                              udp_mode=dns.query.UDPMode.ONLY)
    refused = dns.query.udp(query, server.host, timeout=3, port=server.port, source="127.0.0.2")
    assert refused.rcode() == dns.rcode.REFUSED


# ---------------------------------------------------------------- TSIG


def test_tsig_signed_by_the_key_is_accepted(server: InProcessServer) -> None:
    messages = transfer(server, "xfr.test.", source="127.0.0.3", keyring=KEYRING, keyname="sec1.")
    assert all(message.had_tsig for message in messages)  # and dnspython verified every MAC
    assert records(messages)[0] == records(messages)[-1] == ("xfr.test.", "SOA")


def test_tsig_unsigned_or_other_key_is_refused(server: InProcessServer) -> None:
    with pytest.raises(dns.xfr.TransferError) as unsigned:
        transfer(server, "xfr.test.", source="127.0.0.3")
    assert unsigned.value.rcode == dns.rcode.REFUSED
    other = {dns.name.from_text("sec2."): dns.tsig.Key("sec2.", OTHER_SECRET, dns.tsig.HMAC_SHA256)}
    reply = tcp_query(server, "xfr.test.", source="127.0.0.3", use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED and ede_codes(reply) == [18]
    query = dns.message.make_query("xfr.test.", "AXFR")
    query.use_tsig(other, keyname="sec2.")
    signed = dns.query.tcp(query, server.host, timeout=3, port=server.port, source="127.0.0.3")
    assert signed.rcode() == dns.rcode.REFUSED and signed.had_tsig, "the refusal is signed (RFC 8945 §5.3)"


def test_tsig_unknown_key_is_notauth_badkey(server: InProcessServer) -> None:
    unknown = {dns.name.from_text("nobody."): dns.tsig.Key("nobody.", SECRET, dns.tsig.HMAC_SHA256)}
    with pytest.raises(dns.tsig.PeerBadKey):
        transfer(server, "xfr.test.", source="127.0.0.3", keyring=unknown, keyname="nobody.")
    query = dns.message.make_query("xfr.test.", "AXFR")
    query.use_tsig(unknown, keyname="nobody.")
    reply = dns.message.from_wire(_raw_tcp(server, query), keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADKEY
    assert reply.mac == b"", "RFC 8945 §5.3.2: unsigned, empty MAC"


def test_tsig_wrong_secret_is_notauth_badsig(server: InProcessServer) -> None:
    wrong = {dns.name.from_text("sec1."): dns.tsig.Key("sec1.", OTHER_SECRET, dns.tsig.HMAC_SHA256)}
    with pytest.raises(dns.tsig.PeerBadSignature):
        transfer(server, "xfr.test.", source="127.0.0.3", keyring=wrong, keyname="sec1.")


def _raw_tcp(server: InProcessServer, query: dns.message.Message) -> bytes:
    """The reply's bytes, unparsed: dnspython's client would raise on the TSIG error."""
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        sock.sendall(frame(query.to_wire()))
        return tcp_read_message(sock)


# ---------------------------------------------------------------- size and reload


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "tsig"])
def test_large_zone_spans_several_messages(server: InProcessServer, signed: bool) -> None:
    keys = dict(keyring=KEYRING, keyname="sec1.") if signed else {}
    messages = transfer(server, "big.test.", **keys)
    assert len(messages) >= 2
    assert [len(message.question) for message in messages] == [1] + [0] * (len(messages) - 1)
    assert all(message.had_tsig == signed for message in messages)
    sequence = records(messages)
    assert sequence[0] == sequence[-1] == ("big.test.", "SOA")
    assert sum(1 for _, rrtype in sequence if rrtype == "A") == BIG_COUNT + 1  # and ns1
    assert len(as_zone(messages, "big.test.").nodes) == BIG_COUNT + 2


def test_packed_once_per_zone_version_and_bounded(server: InProcessServer) -> None:
    """A zone version is packed once and reused; a new Zone object (a reload) is packed
    again; only the newest versions of RENDER_CACHE_ZONES zones are kept."""
    responder = server.server.responder.transfer
    zone = server.holder.current.snapshot.zones[names.from_text("xfr.test.")]
    first = responder._rendered_zone(zone)
    assert responder._rendered_zone(zone) is first
    assert responder._rendered_zone(replace(zone)) is not first
    for index in range(RENDER_CACHE_ZONES + 2):
        responder._rendered_zone(replace(zone, origin=names.from_text(f"z{index}.test.")))
    assert len(responder._rendered) == RENDER_CACHE_ZONES
    assert names.from_text("xfr.test.") not in responder._rendered  # the least recently used went first


def test_reload_is_what_the_next_transfer_sends(tmp_path: Path) -> None:
    zone_file = write_zone(tmp_path / "zones", "xfr.test", XFR_ZONE)
    with serve_in_process(tmp_path / "zones") as running:
        assert records(transfer(running, "xfr.test."))[0] == ("xfr.test.", "SOA")
        zone_file.write_text(XFR_ZONE.replace(str(SERIAL), str(SERIAL + 1)) + "  new: {A: 192.0.2.99}\n")
        running.reload()
        messages = transfer(running, "xfr.test.")
        assert messages[0].answer[0][0].serial == SERIAL + 1
        assert ("new.xfr.test.", "A") in records(messages)


# ---------------------------------------------------------------- authdns serve


@pytest.fixture(scope="module")
def served(zone_dir: Path) -> Iterator[ServerProcess]:
    process = start_server(zone_dir)
    try:
        yield process
    finally:
        stop_server(process.process)


@pytest.mark.slow
def test_serve_transfers_by_the_zone_rules(served: ServerProcess, zone_dir: Path) -> None:
    """Needs serve/service.py to give DnsServer (and Responder) a TransferResponder."""
    messages = list(dns.query.xfr(served.host, "xfr.test.", port=served.port, timeout=5, lifetime=10,
                                  relativize=False))
    assert dns.zone.from_xfr(iter(messages), relativize=False) == exported(zone_dir / "xfr.test.yaml", "xfr.test.")
    refused = dns.query.tcp(dns.message.make_query("xfr.test.", "AXFR"), served.host, timeout=3, port=served.port,
                            source="127.0.0.2")
    assert refused.rcode() == dns.rcode.REFUSED


def test_rules_naming_unconfigured_keys_are_reported(server: InProcessServer) -> None:
    zones = list(server.holder.current.snapshot.zones.values())
    assert unknown_keys(zones, server.config) == []
    bare = replace(server.config, tsig_keys={}, allow_transfer=(AllowRule(ipaddress.ip_network("10.0.0.0/8"), "k2."),))
    found = unknown_keys(zones, bare)
    assert len(found) == 2 and "xfr.test.yaml: transfer allow rule 127.0.0.3/32 names TSIG key sec1." in found[0]
    assert found[1].startswith("--allow-transfer rule 10.0.0.0/8 names TSIG key k2.")


def signed_axfr(key: dns.tsig.Key, **options) -> tuple[bytes, bytes]:
    """An AXFR for xfr.test. signed by hand (``support.signed_wire``)."""
    return signed_wire(key, "xfr.test.", dns.rdatatype.AXFR, **options)


def exchange(server: InProcessServer, wire: bytes, source: str = "127.0.0.3", more: float = 0.0) -> list[bytes]:
    """Send one framed message: the first reply, and any that follow within ``more`` s."""
    with socket.create_connection((server.host, server.port), timeout=3, source_address=(source, 0)) as sock:
        sock.sendall(frame(wire))
        replies = [tcp_read_message(sock)]
        if more:
            sock.settimeout(more)
            try:
                while message := tcp_read_message(sock):
                    replies.append(message)
            except (OSError, struct.error, ConnectionError):  # socket.timeout is an OSError
                pass
        return replies


def test_tsig_clock_skew_is_notauth_badtime_signed(server: InProcessServer) -> None:
    """RFC 8945 §5.2.3: a MAC that verifies but was made 1000 s ago (fudge 300): NOTAUTH,
    TSIG error BADTIME, signed by the key, our clock in Other Data."""
    key = KEYRING[dns.name.from_text("sec1.")]
    wire, mac = signed_axfr(key, time_signed=int(time.time()) - 1000)
    (reply_wire,) = exchange(server, wire)
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(reply_wire, keyring=key, request_mac=mac)
    reply = dns.message.from_wire(reply_wire, keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADTIME and len(reply.mac) == 32
    assert abs(int.from_bytes(reply.tsig[0].other, "big") - time.time()) < 60
    assert signed_over(reply_wire, key, mac)


def signed_over(wire: bytes, key: dns.tsig.Key, request_mac: bytes) -> bool:
    """Whether a reply carrying a TSIG error is signed by ``key`` over ``request_mac``
    (dnspython's client raises on the error before it checks the MAC)."""
    reply = dns.message.from_wire(wire, keyring=False)
    rdata = reply.tsig[0]
    start = len(wire) - len(reply.tsig.name.to_wire()) - 10 - len(rdata.to_wire())
    unsigned = wire[:10] + struct.pack("!H", struct.unpack_from("!H", wire, 10)[0] - 1) + wire[12:start]
    ours, _ = dns.tsig.sign(unsigned, key, rdata, rdata.time_signed, request_mac)
    return ours.mac == rdata.mac


def test_tsig_window_is_ours_not_the_requesters(server: InProcessServer) -> None:
    """A request signed 10 h ago that states fudge 65535 (18 h) is still out of our 300 s
    window: BADTIME, not the zone. Sent again (a replay), the same."""
    key = KEYRING[dns.name.from_text("sec1.")]
    wire, mac = signed_axfr(key, time_signed=int(time.time()) - 36000, fudge=65535)
    for _ in range(2):
        replies = exchange(server, wire, more=0.3)
        assert len(replies) == 1
        reply = dns.message.from_wire(replies[0], keyring=False)
        assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADTIME
        assert reply.answer == [] and signed_over(replies[0], key, mac)
    fresh, _ = signed_axfr(key, fudge=65535)  # the same huge fudge, a current time: fine
    reply = dns.message.from_wire(exchange(server, fresh)[0], keyring=False)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer


def test_tsig_window_narrower_fudge_of_the_request_counts(server: InProcessServer) -> None:
    """min(fudge, 300): a request that allows itself 10 s, signed 60 s ago, is late."""
    key = KEYRING[dns.name.from_text("sec1.")]
    wire, _ = signed_axfr(key, time_signed=int(time.time()) - 60, fudge=10)
    reply = dns.message.from_wire(exchange(server, wire)[0], keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADTIME


def test_tsig_truncated_mac_is_badtrunc_signed(server: InProcessServer) -> None:
    """RFC 8945 §5.2.2.1, §5.2.4: 16 octets is an allowed truncation of hmac-sha256 (half
    its 32), and it verifies; our policy wants all 32: NOTAUTH/BADTRUNC, signed."""
    key = KEYRING[dns.name.from_text("sec1.")]
    wire, mac = signed_axfr(key, mac=lambda full: full[:16])
    assert len(mac) == 16
    reply_wire = exchange(server, wire)[0]
    with pytest.raises(dns.tsig.PeerBadTruncation):
        dns.message.from_wire(reply_wire, keyring=key, request_mac=mac)
    reply = dns.message.from_wire(reply_wire, keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADTRUNC
    assert len(reply.mac) == 32 and reply.answer == []
    assert signed_over(reply_wire, key, mac), "RFC 8945 §5.2.2.1: over the truncated request MAC"
    wrong, _ = signed_axfr(key, mac=lambda full: bytes([full[0] ^ 1]) + full[1:16])  # does not verify
    reply = dns.message.from_wire(exchange(server, wrong)[0], keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADSIG and reply.mac == b""


@pytest.mark.parametrize("mac_size", [0, 8, 15, 33], ids=["empty", "8", "15", "33"])
def test_tsig_mac_size_out_of_bounds_is_formerr(server: InProcessServer, mac_size: int) -> None:
    """RFC 8945 §5.2.2.1: a MAC shorter than max(10, 32 / 2) octets or longer than the
    hash: FORMERR, unsigned."""
    key = KEYRING[dns.name.from_text("sec1.")]
    wire, _ = signed_axfr(key, mac=lambda full: (full + bytes(8))[:mac_size])  # cut, or padded past 32
    reply = dns.message.from_wire(exchange(server, wire)[0], keyring=False)
    assert reply.rcode() == dns.rcode.FORMERR and reply.answer == [] and not reply.had_tsig




def test_a_transfer_query_nobody_can_read_gets_formerr_over_tcp(server: InProcessServer) -> None:
    """An AXFR whose additional section is cut short: the transfer cannot read it, so the
    ordinary path answers it, FORMERR (RFC 1035 §4.1.1), on the same connection, which
    then still answers a transfer."""
    question = dns.name.from_text("xfr.test.").to_wire() + struct.pack("!HH", dns.rdatatype.AXFR, 1)
    broken = struct.pack("!HHHHHH", 0x4242, 0, 1, 0, 0, 1) + question + b"\x00\x00\x29"
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(frame(broken))
        reply = tcp_read_message(sock)
        assert reply[:2] == b"\x42\x42" and reply[3] & 0x0F == dns.rcode.FORMERR
        sock.sendall(frame(dns.message.make_query("xfr.test.", "AXFR").to_wire()))
        first = dns.message.from_wire(tcp_read_message(sock), one_rr_per_rrset=True)
        assert first.answer[0].rdtype == dns.rdatatype.SOA
