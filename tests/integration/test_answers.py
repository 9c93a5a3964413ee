"""Answer-engine cases against the shipped zones, asked of a real ``authdns serve`` over
loopback with dnspython as the client.

Checks, as a table of (qname, qtype) → rcode, AA, and the answer/authority/additional
sections compared as sets (order is the rotation's business, not these tests'):

* positive answers: A, AAAA, MX (+ addresses in additional, also across zones), SRV
  (+ target addresses), NS at the apex (+ addresses), null MX (RFC 7505, no additional),
  CAA, TXT made of two strings, PTR in the reverse zone;
* NXDOMAIN and NODATA carry the zone's SOA in authority with TTL = min(SOA TTL, SOA
  MINIMUM) (RFC 2308 §3) — the reverse zone has TTL 86400 and MINIMUM 3600, and a
  private zone has TTL 300 < MINIMUM; empty non-terminals (``_tcp``, ``users``) are
  NODATA, not NXDOMAIN (RFC 8020); a name below an existing leaf is NXDOMAIN;
* REFUSED, AA clear and no records for names outside our zones (and for a parent of one);
* CNAME chains followed within a zone and across zones (webmail.example.net →
  www.example.test → example.test), and a CNAME query answered with the CNAME alone;
* wildcards (RFC 4592): a match takes the query name as owner, several labels below the
  wildcard match too, wildcard NODATA, the wildcard name itself, and ``x.*.users`` is
  NXDOMAIN; a wildcard MX gets its exchanger's addresses;
* the referral for lab.example.test (and names under it, its NS query and its glue name):
  AA clear, NS in authority, glue in additional; DS at the cut answered by the parent;
* ANY gets exactly one RRset (RFC 8482); ANY at an alias gets the CNAME alone (ANY
  matches the CNAME type, RFC 1034 §4.3.2 step 3a);
* header: AA as decided, RA never, RD and CD copied (RFC 1035 §4.1.1, RFC 4035 §3.1.6),
  ID echoed, the question echoed; each case over UDP, UDP with EDNS and TCP;
* CHAOS: TXT version.bind / version.server / id.server / hostname.bind; other CH names
  REFUSED, and so are other types at those names (no CH SOA for a NODATA); unknown
  classes (HS, 42, NONE) REFUSED; AXFR REFUSED (no transfer ACL yet).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from authdns import __version__
from conftest import ServerProcess, rrset_texts
from support import write_zone

ZONE_FILES = {
    "test": "example.test.yaml",
    "net": "example.net.yaml",
    "rev": "2.0.192.in-addr.arpa.yaml",
}


def soa(zone: str, ttl: int) -> str:
    """The zone's SOA line as dnspython prints it; the serial is filled in per server."""
    if zone == "test":
        return f"example.test. {ttl} IN SOA ns1.example.test. hostmaster.example.test. {{serial_test}} 14400 3600 1209600 3600"
    if zone == "net":
        return f"example.net. {ttl} IN SOA ns1.example.test. dns-admin.example.net. {{serial_net}} 14400 3600 1209600 3600"
    return (f"2.0.192.in-addr.arpa. {ttl} IN SOA ns1.example.test. hostmaster.2.0.192.in-addr.arpa. "
            f"{{serial_rev}} 14400 3600 1209600 3600")


NEG_TEST = soa("test", 3600)  # min(3600, 3600)
NEG_NET = soa("net", 3600)
NEG_REV = soa("rev", 3600)  # min(86400, 3600): the SOA's own TTL is a day

MAIL_ADDRESSES = (
    "mail.example.test. 3600 IN A 192.0.2.25",
    "mail.example.test. 3600 IN AAAA 2001:db8::25",
)
LAB_REFERRAL = dict(
    rcode="NOERROR", aa=False,
    authority=("lab.example.test. 3600 IN NS ns.lab.example.test.", "lab.example.test. 3600 IN NS ns2.example.test."),
    additional=("ns.lab.example.test. 3600 IN A 192.0.2.53", "ns2.example.test. 3600 IN A 192.0.2.2"),
)


@dataclass(frozen=True)
class Case:
    id: str
    qname: str
    qtype: str
    rcode: str = "NOERROR"
    aa: bool = True
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()


CASES = [
    # ---- positive answers
    Case("apex-a", "example.test", "A", answer=("example.test. 3600 IN A 192.0.2.10",)),
    Case("apex-aaaa", "example.test", "AAAA", answer=("example.test. 3600 IN AAAA 2001:db8::10",)),
    Case("apex-soa", "example.test", "SOA", answer=(soa("test", 3600),)),
    Case("apex-ns-with-addresses", "example.test", "NS",
         answer=("example.test. 3600 IN NS ns1.example.test.", "example.test. 3600 IN NS ns2.example.test."),
         additional=("ns1.example.test. 3600 IN A 192.0.2.1", "ns1.example.test. 3600 IN AAAA 2001:db8::1",
                     "ns2.example.test. 3600 IN A 192.0.2.2")),
    Case("mx-additional", "example.test", "MX",
         answer=("example.test. 3600 IN MX 20 mail.example.test.", "example.test. 3600 IN MX 50 mail2.example.test."),
         additional=(*MAIL_ADDRESSES, "mail2.example.test. 3600 IN A 198.51.100.25")),
    Case("mx-pool-additional", "pool.example.test", "MX",
         answer=tuple(f"pool.example.test. 300 IN MX {p} {t}.example.test."
                      for p, t in ((10, "mx1"), (10, "mx2"), (10, "mx3"), (50, "mail2"))),
         additional=("mx1.example.test. 3600 IN A 192.0.2.31", "mx2.example.test. 3600 IN A 192.0.2.32",
                     "mx3.example.test. 3600 IN A 192.0.2.33", "mail2.example.test. 3600 IN A 198.51.100.25")),
    Case("mx-additional-across-zones", "sub.example.test", "MX",
         answer=("sub.example.test. 3600 IN MX 10 mx.example.net.",),
         additional=("mx.example.net. 300 IN A 203.0.113.5", "mx.example.net. 300 IN A 203.0.113.6")),
    Case("multihomed-a", "smtp.example.test", "A",
         answer=tuple(f"smtp.example.test. 300 IN A 192.0.2.{n}" for n in (41, 42, 43))),
    Case("srv-additional", "_submission._tcp.example.test", "SRV",
         answer=("_submission._tcp.example.test. 3600 IN SRV 0 1 587 smtp.example.test.",),
         additional=(*(f"smtp.example.test. 300 IN A 192.0.2.{n}" for n in (41, 42, 43)),
                     "smtp.example.test. 300 IN AAAA 2001:db8::41", "smtp.example.test. 300 IN AAAA 2001:db8::42")),
    Case("srv-mapping-form", "_imaps._tcp.example.test", "SRV",
         answer=("_imaps._tcp.example.test. 3600 IN SRV 0 1 993 mail.example.test.",), additional=MAIL_ADDRESSES),
    Case("null-mx", "example.net", "MX", answer=("example.net. 3600 IN MX 0 .",)),
    Case("caa", "example.test", "CAA", answer=('example.test. 3600 IN CAA 0 issue "letsencrypt.org"',)),
    Case("txt-one-string", "example.test", "TXT", answer=('example.test. 3600 IN TXT "v=spf1 mx -all"',)),
    Case("txt-two-strings", "example.net", "TXT", answer=('example.net. 3600 IN TXT "v=spf1" " -all"',)),
    Case("ptr", "25.2.0.192.in-addr.arpa", "PTR", answer=("25.2.0.192.in-addr.arpa. 86400 IN PTR mail.example.test.",)),
    Case("reverse-apex-ns", "2.0.192.in-addr.arpa", "NS",
         answer=("2.0.192.in-addr.arpa. 86400 IN NS ns1.example.test.", "2.0.192.in-addr.arpa. 86400 IN NS ns2.example.test."),
         additional=("ns1.example.test. 3600 IN A 192.0.2.1", "ns1.example.test. 3600 IN AAAA 2001:db8::1",
                     "ns2.example.test. 3600 IN A 192.0.2.2")),
    Case("case-insensitive-lookup", "MAIL2.Example.TEST", "A", answer=("MAIL2.Example.TEST. 3600 IN A 198.51.100.25",)),
    # ---- negative answers (RFC 2308)
    Case("nxdomain", "nope.example.test", "A", "NXDOMAIN", authority=(NEG_TEST,)),
    Case("nxdomain-below-leaf", "x.mail.example.test", "A", "NXDOMAIN", authority=(NEG_TEST,)),
    Case("nxdomain-other-zone", "nope.example.net", "MX", "NXDOMAIN", authority=(NEG_NET,)),
    Case("nxdomain-reverse-negative-ttl", "99.2.0.192.in-addr.arpa", "PTR", "NXDOMAIN", authority=(NEG_REV,)),
    Case("nodata", "mail.example.test", "MX", authority=(NEG_TEST,)),
    Case("nodata-apex", "example.test", "SRV", authority=(NEG_TEST,)),
    Case("nodata-reverse-negative-ttl", "25.2.0.192.in-addr.arpa", "A", authority=(NEG_REV,)),
    Case("empty-non-terminal-tcp", "_tcp.example.test", "SRV", authority=(NEG_TEST,)),
    Case("empty-non-terminal-tcp-a", "_tcp.example.test", "A", authority=(NEG_TEST,)),
    Case("empty-non-terminal-users", "users.example.test", "A", authority=(NEG_TEST,)),
    # ---- not ours
    Case("refused-other-domain", "example.org", "A", "REFUSED", aa=False),
    Case("refused-parent-of-zone", "test", "SOA", "REFUSED", aa=False),
    Case("refused-parent-of-reverse", "0.192.in-addr.arpa", "NS", "REFUSED", aa=False),
    Case("refused-root", ".", "NS", "REFUSED", aa=False),
    # ---- CNAME
    Case("cname-in-zone", "www.example.test", "A",
         answer=("www.example.test. 3600 IN CNAME example.test.", "example.test. 3600 IN A 192.0.2.10")),
    Case("cname-in-zone-aaaa", "www.example.test", "AAAA",
         answer=("www.example.test. 3600 IN CNAME example.test.", "example.test. 3600 IN AAAA 2001:db8::10")),
    Case("cname-query-for-cname", "www.example.test", "CNAME", answer=("www.example.test. 3600 IN CNAME example.test.",)),
    Case("cname-then-nodata", "www.example.test", "SRV",
         answer=("www.example.test. 3600 IN CNAME example.test.",), authority=(NEG_TEST,)),
    Case("any-at-alias-is-the-cname", "www.example.test", "ANY", answer=("www.example.test. 3600 IN CNAME example.test.",)),
    Case("cname-across-zones", "webmail.example.net", "A",
         answer=("webmail.example.net. 3600 IN CNAME www.example.test.", "www.example.test. 3600 IN CNAME example.test.",
                 "example.test. 3600 IN A 192.0.2.10")),
    Case("cname-across-zones-mx", "webmail.example.net", "MX",
         answer=("webmail.example.net. 3600 IN CNAME www.example.test.", "www.example.test. 3600 IN CNAME example.test.",
                 "example.test. 3600 IN MX 20 mail.example.test.", "example.test. 3600 IN MX 50 mail2.example.test."),
         additional=(*MAIL_ADDRESSES, "mail2.example.test. 3600 IN A 198.51.100.25")),
    # ---- wildcards (RFC 4592)
    Case("wildcard-match", "alice.users.example.test", "A", answer=("alice.users.example.test. 3600 IN A 192.0.2.80",)),
    Case("wildcard-match-several-labels", "a.b.users.example.test", "A",
         answer=("a.b.users.example.test. 3600 IN A 192.0.2.80",)),
    Case("wildcard-mx-additional", "bob.users.example.test", "MX",
         answer=("bob.users.example.test. 3600 IN MX 10 mail.example.test.",), additional=MAIL_ADDRESSES),
    Case("wildcard-nodata", "alice.users.example.test", "AAAA", authority=(NEG_TEST,)),
    Case("wildcard-name-itself", "*.users.example.test", "A", answer=("*.users.example.test. 3600 IN A 192.0.2.80",)),
    Case("below-wildcard-name", "ghost.*.users.example.test", "A", "NXDOMAIN", authority=(NEG_TEST,)),
    # ---- delegation
    Case("referral-below-cut", "host.lab.example.test", "A", **LAB_REFERRAL),
    Case("referral-deep", "a.b.lab.example.test", "MX", **LAB_REFERRAL),
    Case("referral-at-cut", "lab.example.test", "A", **LAB_REFERRAL),
    Case("referral-for-ns-at-cut", "lab.example.test", "NS", **LAB_REFERRAL),
    Case("referral-for-glue-name", "ns.lab.example.test", "A", **LAB_REFERRAL),
    Case("ds-at-cut-is-parent-nodata", "lab.example.test", "DS", authority=(NEG_TEST,)),
]


@pytest.fixture(scope="module")
def serials(shipped_server: ServerProcess) -> dict[str, int]:
    """The generated SOA serials, as the server logged them when it loaded each file
    (how they are generated is tested in tests/integration/test_reload.py)."""
    found = {}
    for line in shipped_server.log:
        match = re.search(r"zone loaded origin=\S+ records=\d+ serial=(\d+) file=(\S+)", line)
        if match:
            found[Path(match.group(2)).name] = int(match.group(1))
    return {f"serial_{key}": found[name] for key, name in ZONE_FILES.items()}


def expand(lines: tuple[str, ...], serials: dict[str, int]) -> set[str]:
    return {line.format(**serials) for line in lines}


TRANSPORTS = {
    "udp": dict(tcp=False),
    "udp-edns": dict(tcp=False, use_edns=0, payload=1232),
    "tcp": dict(tcp=True),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_answer(shipped_server: ServerProcess, serials: dict[str, int], case: Case, transport: str) -> None:
    response = shipped_server.query(case.qname, case.qtype, **TRANSPORTS[transport])
    assert dns.rcode.to_text(response.rcode()) == case.rcode
    assert bool(response.flags & dns.flags.AA) == case.aa
    assert not response.flags & dns.flags.RA, "an authoritative-only server never sets RA"
    assert not response.flags & dns.flags.TC
    assert [q.to_text() for q in response.question] == [f"{dns.name.from_text(case.qname)} IN {case.qtype}"]
    assert rrset_texts(response.answer) == expand(case.answer, serials)
    assert rrset_texts(response.authority) == expand(case.authority, serials)
    assert rrset_texts(response.additional) == expand(case.additional, serials)
    assert (response.edns >= 0) == (transport == "udp-edns"), "OPT in the response iff the query had one"


# ---------------------------------------------------------------- header bits


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("qname, qtype", [("example.test", "A"), ("nope.example.test", "A"), ("example.org", "A")])
def test_rd_copied_ra_never(shipped_server: ServerProcess, qname: str, qtype: str, tcp: bool) -> None:
    for rd in (False, True):
        response = shipped_server.query(qname, qtype, rd=rd, tcp=tcp)
        assert bool(response.flags & dns.flags.RD) == rd
        assert not response.flags & dns.flags.RA


def test_cd_copied(shipped_server: ServerProcess) -> None:
    for cd in (False, True):
        query = dns.message.make_query("example.test", "A", use_edns=0)
        query.flags = (query.flags | dns.flags.CD) if cd else (query.flags & ~dns.flags.CD)
        response = shipped_server.send(query)
        assert bool(response.flags & dns.flags.CD) == cd
        assert response.id == query.id


def test_response_is_response_to_query(shipped_server: ServerProcess) -> None:
    query = dns.message.make_query("mail.example.test", "AAAA")
    response = shipped_server.send(query)
    assert query.is_response(response)
    assert response.flags & dns.flags.QR
    assert response.opcode() == dns.opcode.QUERY


# ---------------------------------------------------------------- ANY (RFC 8482)

APEX_RRSETS = {"SOA", "NS", "A", "AAAA", "MX", "TXT", "CAA"}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_any_is_minimal(shipped_server: ServerProcess, tcp: bool) -> None:
    response = shipped_server.query("example.test", "ANY", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert len(response.answer) == 1, f"ANY must get one RRset, got {[r.to_text() for r in response.answer]}"
    (rrset,) = response.answer
    assert rrset.name == dns.name.from_text("example.test")
    assert dns.rdatatype.to_text(rrset.rdtype) in APEX_RRSETS
    assert not response.flags & dns.flags.TC


def test_any_at_empty_non_terminal_is_nodata(shipped_server: ServerProcess) -> None:
    response = shipped_server.query("users.example.test", "ANY")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert [dns.rdatatype.to_text(r.rdtype) for r in response.authority] == ["SOA"]


def test_any_nxdomain(shipped_server: ServerProcess) -> None:
    assert shipped_server.query("nope.example.test", "ANY").rcode() == dns.rcode.NXDOMAIN


# ---------------------------------------------------------------- TXT strings, exactly


def test_txt_string_boundaries(shipped_server: ServerProcess) -> None:
    response = shipped_server.query("example.net", "TXT")
    (rrset,) = response.answer
    assert [rdata.strings for rdata in rrset] == [(b"v=spf1", b" -all")]


# ---------------------------------------------------------------- CHAOS and classes


@pytest.mark.parametrize("qname, text", [
    ("version.bind", f"authdns {__version__}"),
    ("version.server", f"authdns {__version__}"),
    ("id.server", socket.gethostname()),
    ("hostname.bind", socket.gethostname()),
])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_chaos_txt(shipped_server: ServerProcess, qname: str, text: str, tcp: bool) -> None:
    response = shipped_server.query(qname, "TXT", rdclass="CH", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert len(response.answer) == 1
    (rrset,) = response.answer
    assert rrset.rdclass == dns.rdataclass.CH
    assert rrset.rdtype == dns.rdatatype.TXT
    assert rrset.name == dns.name.from_text(qname)
    assert [rdata.strings for rdata in rrset] == [(text.encode()[:255],)]
    assert response.question[0].rdclass == dns.rdataclass.CH


@pytest.mark.parametrize("qtype", ["A", "SOA", "NS"])
def test_chaos_other_type_refused(shipped_server: ServerProcess, qtype: str) -> None:
    """No CH zone, so no SOA for a NODATA (RFC 2308 §2.2): other types are REFUSED."""
    response = shipped_server.query("version.bind", qtype, rdclass="CH")
    assert response.rcode() == dns.rcode.REFUSED
    assert response.answer == [] and response.authority == []


@pytest.mark.parametrize("qname", ["authors.bind", "example.test", "nope.bind"])
def test_chaos_other_names_refused(shipped_server: ServerProcess, qname: str) -> None:
    response = shipped_server.query(qname, "TXT", rdclass="CH")
    assert response.rcode() == dns.rcode.REFUSED
    assert response.answer == [] and response.authority == []


@pytest.mark.parametrize("rdclass", ["HS", "CLASS42", "NONE"])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_unknown_class_refused(shipped_server: ServerProcess, rdclass: str, tcp: bool) -> None:
    response = shipped_server.query("example.test", "A", rdclass=rdclass, tcp=tcp)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert response.answer == [] and response.authority == [] and response.additional == []
    assert response.question[0].rdclass == dns.rdataclass.from_text(rdclass)


def test_axfr_refused(shipped_server: ServerProcess) -> None:
    response = shipped_server.query("example.test", "AXFR", tcp=True)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.answer == []


# ---------------------------------------------------------------- negative TTL below MINIMUM

SHORT_SOA_ZONE = """\
ttl: 300
records:
  "@":
    SOA: {rname: hostmaster, serial: 7, minimum: 1h}
    NS: [ns1]
  ns1: {A: 192.0.2.1}
  host: {A: 192.0.2.7}
"""


def test_negative_ttl_is_soa_ttl_when_lower(tmp_path: Path, server_factory) -> None:
    """RFC 2308 §3: the SOA in a negative answer has TTL min(SOA TTL, MINIMUM); here the
    SOA's own TTL (300, from the zone default) is below MINIMUM (3600)."""
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, "short.test", SHORT_SOA_ZONE)
    server = server_factory(zone_dir)
    expected = {"short.test. 300 IN SOA ns1.short.test. hostmaster.short.test. 7 14400 3600 1209600 3600"}
    for qname, qtype, rcode in (("nope.short.test", "A", dns.rcode.NXDOMAIN), ("host.short.test", "MX", dns.rcode.NOERROR)):
        response = server.query(qname, qtype)
        assert response.rcode() == rcode
        assert rrset_texts(response.authority) == expected
    assert rrset_texts(server.query("short.test", "SOA").answer) == expected
