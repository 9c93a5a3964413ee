"""Every record type in a YAML zone, served by a real ``authdns serve`` and read back with
dnspython (issue 12).

Checks:
* each type's short form (presentation text, as in a master file) and mapping form
  (TLSA, SSHFP, DS, NAPTR, SVCB/HTTPS) is answered with exactly the rdata dnspython
  parses from the same presentation text (an independent implementation), over UDP and
  TCP, with the RRset's TTL; RFC 3597 ``\\# LEN HEX`` for an unknown type and for a known
  one; SPF with TXT's short form;
* the SOA's own TTL (the RRset mapping form) is served, and negative answers carry
  min(SOA TTL, MINIMUM) (RFC 2308 §3);
* DNAME (RFC 6672): the DNAME and a synthesized CNAME (DNAME's TTL, owner = qname) for
  names below it, the chain followed when the target is ours, YXDOMAIN when the new name
  would exceed 255 octets, the DNAME itself at its owner, a DNAME at a zone apex;
* the root zone served from ``root.yaml``;
* a master file dropped into the zones directory is reported with a hint to import it.
"""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from conftest import ServerProcess

ORIGIN = "types.test."
HASH = "0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"

ZONE = f"""\
ttl: 300
records:
  "@":
    SOA: {{ttl: 120, records: [{{mname: ns1, rname: hostmaster, serial: 7, minimum: 600}}]}}
    NS: ns1
    MX: 10 mx
    SPF: "v=spf1 mx -all"
    HINFO: '"PC" "Linux"'
    TYPE65280: '\\# 4 0a000001'
    CDS: {{key_tag: 12345, algorithm: 13, digest_type: 2, digest: "{HASH}"}}
    CDNSKEY: "257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="
  ns1: {{A: 192.0.2.1}}
  mx:
    A: 192.0.2.25
    SSHFP: {{algorithm: 4, fp_type: 2, fingerprint: "{HASH}"}}
  _25._tcp.mx: {{TLSA: "3 1 1 {HASH}"}}
  _443._tcp.www: {{TLSA: {{usage: DANE-EE, selector: SPKI, matching_type: SHA2-256, data: "{HASH}"}}}}
  child: {{NS: ns.child, DS: {{ttl: 3600, records: ["60485 RSASHA256 2 {HASH}"]}}}}
  ns.child: {{A: 192.0.2.53}}
  sip: {{NAPTR: {{order: 100, preference: 10, flags: S, service: "SIP+D2U", regexp: "", replacement: _sip._udp}}}}
  www:
    HTTPS: {{priority: 1, target: ".", params: {{alpn: [h2, h3], port: 443, ipv4hint: [192.0.2.80]}}}}
    A: 192.0.2.80
  alias-mode: {{SVCB: "0 www"}}
  loc: {{LOC: "52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m"}}
  rp: {{RP: "hostmaster txt"}}
  uri: {{URI: '10 1 "https://www.types.test/"'}}
  pgp: {{OPENPGPKEY: "AQIDBAU="}}
  smime: {{SMIMEA: "3 1 1 {HASH}"}}
  generic-a: {{A: '\\# 4 c0000263'}}
  txt: {{TXT: [[part one, part two], single]}}
  old: {{DNAME: new}}
  new: {{A: 192.0.2.99}}
  x.new: {{A: 192.0.2.98, TXT: renamed}}
  away: {{DNAME: elsewhere.example.}}
  long: {{DNAME: {"a" * 60}.{"b" * 60}.{"c" * 60}.example.}}
"""

# (owner, type, TTL, presentation text of each record as dnspython would read it from a master file)
EXPECTED = [
    ("@", "SPF", 300, ['"v=spf1 mx -all"']),
    ("@", "HINFO", 300, ['"PC" "Linux"']),
    ("@", "TYPE65280", 300, ["\\# 4 0a000001"]),
    ("@", "CDS", 300, [f"12345 13 2 {HASH}"]),
    ("@", "CDNSKEY", 300, ["257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="]),
    ("mx", "SSHFP", 300, [f"4 2 {HASH}"]),
    ("_25._tcp.mx", "TLSA", 300, [f"3 1 1 {HASH}"]),
    ("_443._tcp.www", "TLSA", 300, [f"3 1 1 {HASH}"]),
    ("child", "DS", 3600, [f"60485 8 2 {HASH}"]),
    ("sip", "NAPTR", 300, ['100 10 "S" "SIP+D2U" "" _sip._udp']),
    ("www", "HTTPS", 300, ['1 . alpn="h2,h3" port=443 ipv4hint=192.0.2.80']),
    ("alias-mode", "SVCB", 300, ["0 www"]),
    ("loc", "LOC", 300, ["52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m"]),
    ("rp", "RP", 300, ["hostmaster txt"]),
    ("uri", "URI", 300, ['10 1 "https://www.types.test/"']),
    ("pgp", "OPENPGPKEY", 300, ["AQIDBAU="]),
    ("smime", "SMIMEA", 300, [f"3 1 1 {HASH}"]),
    ("generic-a", "A", 300, ["192.0.2.99"]),
    ("txt", "TXT", 300, ['"part one" "part two"', '"single"']),
    ("old", "DNAME", 300, ["new"]),
]


def absolute(owner: str) -> str:
    return ORIGIN if owner == "@" else f"{owner}.{ORIGIN}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    from conftest import start_server, stop_server

    zones = tmp_path_factory.mktemp("types") / "zones"
    zones.mkdir()
    (zones / f"{ORIGIN}yaml").write_text(ZONE)
    (zones / "legacy.test.zone").write_text("$TTL 300\n@ SOA ns1 hostmaster 1 2 3 4 5\n")
    process = start_server(zones)
    yield process
    stop_server(process.process)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("owner,rtype,ttl,texts", EXPECTED, ids=[f"{o}-{t}" for o, t, _, _ in EXPECTED])
def test_type_is_served_as_written(server: ServerProcess, owner: str, rtype: str, ttl: int, texts: list[str],
                                   tcp: bool) -> None:
    reply = server.query(absolute(owner), rtype, tcp=tcp, use_edns=0, payload=1232)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    (rrset,) = [r for r in reply.answer if r.rdtype == dns.rdatatype.from_text(rtype)]
    assert rrset.name == dns.name.from_text(absolute(owner)) and rrset.ttl == ttl
    origin = dns.name.from_text(ORIGIN)
    expected = {dns.rdata.from_text("IN", rtype, text, origin=origin, relativize=False) for text in texts}
    assert set(rrset) == expected


def test_soa_has_its_own_ttl(server: ServerProcess) -> None:
    reply = server.query(ORIGIN, "SOA")
    assert reply.answer[0].ttl == 120 and reply.answer[0][0].serial == 7
    negative = server.query(f"nothing.{ORIGIN}", "A")
    assert negative.rcode() == dns.rcode.NXDOMAIN
    assert negative.authority[0].ttl == 120, "min(SOA TTL 120, MINIMUM 600): RFC 2308 §3"


def test_dname_substitution_follows_into_our_data(server: ServerProcess) -> None:
    reply = server.query(f"x.old.{ORIGIN}", "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    lines = {line for rrset in reply.answer for line in rrset.to_text().splitlines()}
    assert lines == {
        f"old.{ORIGIN} 300 IN DNAME new.{ORIGIN}",
        f"x.old.{ORIGIN} 300 IN CNAME x.new.{ORIGIN}",
        f"x.new.{ORIGIN} 300 IN A 192.0.2.98",
    }


def test_dname_target_outside_our_zones(server: ServerProcess) -> None:
    reply = server.query(f"a.b.away.{ORIGIN}", "MX")
    lines = {line for rrset in reply.answer for line in rrset.to_text().splitlines()}
    assert reply.rcode() == dns.rcode.NOERROR
    assert lines == {f"away.{ORIGIN} 300 IN DNAME elsewhere.example.",
                     f"a.b.away.{ORIGIN} 300 IN CNAME a.b.elsewhere.example."}


def test_dname_to_a_missing_name_is_nxdomain_after_the_chain(server: ServerProcess) -> None:
    reply = server.query(f"gone.old.{ORIGIN}", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN, "RFC 6604 §3: the rcode of the last name"
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.DNAME, dns.rdatatype.CNAME]


def test_dname_substitution_too_long_is_yxdomain(server: ServerProcess) -> None:
    qname = f"{'q' * 40}.{'r' * 40}.long.{ORIGIN}"
    reply = server.query(qname, "A")
    assert reply.rcode() == dns.rcode.YXDOMAIN
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.DNAME]


def test_dname_owner_itself_is_not_redirected(server: ServerProcess) -> None:
    reply = server.query(f"old.{ORIGIN}", "A")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer  # NODATA
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_root_zone_from_root_yaml(tmp_path: Path, server_factory) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "root.yaml").write_text('records:\n  "@": {NS: a.root-servers.test.}\n  test: {NS: ns.test.}\n'
                                     '  ns.test: {A: 192.0.2.200}\n  a.root-servers.test: {A: 192.0.2.201}\n')
    server = server_factory(zones)
    reply = server.query(".", "NS")
    assert reply.flags & dns.flags.AA and reply.answer[0].to_text() == ". 3600 IN NS a.root-servers.test."
    referral = server.query("www.example.test.", "A")  # the test. TLD is delegated from the root
    # example.test is not served here, so the root answers with its referral to test.
    assert not referral.flags & dns.flags.AA and referral.authority[0].name == dns.name.from_text("test.")
    assert reply.additional[0].to_text() == "a.root-servers.test. 3600 IN A 192.0.2.201"


def test_master_file_in_zones_dir_gets_a_hint(server: ServerProcess) -> None:
    line = server.wait_for_log(r"legacy\.test\.zone:1:1: warning: not a YAML zone file")
    assert "authdns import legacy.test.zone --origin legacy.test." in line
