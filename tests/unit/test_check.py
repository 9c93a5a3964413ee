"""`authdns check` and the zone-file rules behind it.

Checks: every rule the issue lists is reported as ``file:line:column: message`` at the
right place; every problem in a file is listed (not just the first); warnings leave the
exit status 0; the shipped zones are valid; short and full forms load to the same data.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from dnslib import QTYPE

from conftest import run_authdns
from authdns.base import names
from authdns.zones.loader import load_zone_file

ROOT = Path(__file__).resolve().parents[2]

GOOD_HEAD = """\
records:
  "@":
    NS: [ns1]
  ns1: {A: 192.0.2.1}
"""


def write_zone(tmp_path: Path, body: str, name: str = "example.test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run_check(*paths: Path | str) -> subprocess.CompletedProcess:
    return run_authdns("check", *paths)


def problems_of(path: Path) -> list[str]:
    _, problems = load_zone_file(path)
    return [str(problem) for problem in problems]


# (id, zone body, expected line:column, expected message fragment)
ERROR_CASES = [
    ("mx-target-ip", GOOD_HEAD + "  mail: {MX: 10 192.0.2.25}\n", "5:14", "MX exchange must be a host name, not the IP address"),
    ("ns-target-ip", 'records:\n  "@":\n    NS: [192.0.2.1]\n', "3:10", "NS target must be a host name"),
    ("mx-target-cname", GOOD_HEAD + "  a: {MX: 10 b}\n  b: {CNAME: ns1}\n", "5:11", "is a CNAME; it must name a host (RFC 2181 §10.3)"),
    ("ns-target-cname", 'records:\n  "@":\n    NS: [ns1, alias]\n  ns1: {A: 192.0.2.1}\n  alias: {CNAME: ns1}\n',
     "3:15", "NS target alias.example.test. is a CNAME"),
    ("ns-target-no-address", 'records:\n  "@":\n    NS: [ns1]\n', "3:10", "NS target ns1.example.test. is in this zone but has no A or AAAA"),
    ("cname-beside-data", GOOD_HEAD + "  www:\n    CNAME: ns1\n    A: 192.0.2.9\n", "6:5", "beside other data (A)"),
    ("two-cnames", GOOD_HEAD + "  www:\n    CNAME: [ns1, ns1.example.net.]\n", "6:18", "more than one CNAME"),
    ("out-of-zone", GOOD_HEAD + "  www.example.org.: {A: 192.0.2.9}\n", "5:3", "is out of zone"),
    ("ttl-out-of-range", GOOD_HEAD + "  www: {A: {ttl: 2147483648, records: [192.0.2.9]}}\n", "5:18", "out of range 0..2147483647"),
    ("ttl-not-a-number", "ttl: soon\n" + GOOD_HEAD, "1:6", "zone TTL must be seconds or a duration"),
    ("preference-out-of-range", GOOD_HEAD + "  m: {MX: 65536 ns1}\n", "5:11", "MX preference 65536 is out of range 0..65535"),
    ("bad-ipv4", GOOD_HEAD + "  www: {A: 192.0.2.300}\n", "5:12", "is not an IPv4 address"),
    ("bad-ipv6", GOOD_HEAD + "  www: {AAAA: '2001:db8::g'}\n", "5:15", "is not an IPv6 address"),
    ("ipv6-under-a", GOOD_HEAD + "  www: {A: '2001:db8::1'}\n", "5:12", "is not an IPv4 address"),
    ("txt-too-long", GOOD_HEAD + "  t: {TXT: " + "x" * 256 + "}\n", "5:12", "TXT string is 256 octets; at most 255"),
    ("unknown-type", GOOD_HEAD + "  www: {FROB: x}\n", "5:9", "unknown record type 'FROB'"),
    ("meta-type", GOOD_HEAD + "  www: {ANY: x}\n", "5:9", "ANY is not a record type a zone holds"),
    ("signature-type", GOOD_HEAD + "  www: {RRSIG: x}\n", "5:9", "RRSIG records are made by a DNSSEC signer"),
    ("hinfo-one-string", GOOD_HEAD + "  www: {HINFO: PC}\n", "5:16", "HINFO"),
    ("tlsa-bad-hex", GOOD_HEAD + "  _25._tcp.mx: {TLSA: '3 1 1 zz'}\n", "5:23", "TLSA"),
    ("tlsa-mapping-unknown-field", GOOD_HEAD + "  t: {TLSA: {usage: 3, selector: 1, matching: 1, data: ab}}\n", "5:13",
     "TLSA: unknown field 'matching'"),
    ("ds-mapping-missing-field", GOOD_HEAD + "  c: {DS: {key_tag: 1, algorithm: 13, digest_type: 2}}\n", "5:11",
     "DS: missing field 'digest'"),
    ("no-mapping-form", GOOD_HEAD + "  c: {HINFO: {cpu: PC, os: Linux}}\n", "5:14", "HINFO has no mapping form"),
    ("generic-length-wrong", GOOD_HEAD + "  c: {TYPE65280: '\\# 5 0a000001'}\n", "5:18", "TYPE65280"),
    ("soa-records-two", GOOD_HEAD.replace('"@":\n', '"@":\n    SOA: {ttl: 60, records: [{serial: 1}, {serial: 2}]}\n'),
     "3:29", "an SOA RRset holds exactly one record, not 2"),
    ("two-dnames", GOOD_HEAD + "  d: {DNAME: [a.example.org., b.example.org.]}\n", "5:31", "more than one DNAME (RFC 6672 §2.4)"),
    ("data-below-dname", GOOD_HEAD + "  d: {DNAME: example.org.}\n  x.d: {A: 192.0.2.1}\n", "6:9",
     "is below the DNAME at d.example.test.: no data may exist below a DNAME"),
    ("mx-target-below-dname", GOOD_HEAD + "  d: {DNAME: example.org.}\n  m: {MX: 10 x.d}\n", "6:11",
     "MX exchange x.d.example.test. is below a DNAME"),
    ("duplicate-key", GOOD_HEAD + "  www: {A: 192.0.2.1}\n  www: {A: 192.0.2.2}\n", "6:3", "key 'www' appears twice (first at line 5)"),
    ("same-owner-two-spellings", GOOD_HEAD + "  www: {A: 192.0.2.1}\n  WWW.example.test.: {A: 192.0.2.2}\n",
     "6:23", "A at www.example.test. is given twice"),
    ("label-too-long", GOOD_HEAD + "  " + "a" * 64 + ": {A: 192.0.2.1}\n", "5:3", "label longer than 63 octets"),
    ("no-apex-ns", "records:\n  www: {A: 192.0.2.1}\n", "1:1", "has no NS records"),
    ("soa-not-at-apex", GOOD_HEAD + "  sub: {SOA: {}}\n", "5:9", "SOA belongs at the zone apex"),
    ("unknown-top-key", "color: blue\n" + GOOD_HEAD, "1:1", "unknown top-level key 'color'"),
    ("origin-mismatch", "origin: example.org.\n" + GOOD_HEAD, "1:9", "does not match the file name"),
    ("mx-missing-field", GOOD_HEAD + "  m: {MX: {preference: 10}}\n", "5:11", "missing field 'exchange'"),
    ("mx-short-form-fields", GOOD_HEAD + "  m: {MX: mail}\n", "5:11", "MX record needs 2 fields"),
    ("caa-bad-tag", GOOD_HEAD + '  "@2": {CAA: "0 is-sue x"}\n', "5:15", "CAA tag"),
    ("yaml-syntax", GOOD_HEAD + "  www: {A: [192.0.2.1}\n", "5:22", "YAML syntax"),
    ("unknown-rrset-option", GOOD_HEAD + "  www: {A: {ttl: 60, color: red, records: [192.0.2.1]}}\n", "5:22", "unknown RRset option 'color'"),
]


# What BIND and NSD load with a warning (measured with named-checkzone 9.18 and
# nsd-checkzone 4.6): the zone serves, `check` exits 0 (1 with --strict).
WARNING_CASES = [
    ("mx-target-no-address", GOOD_HEAD + "  a: {MX: 10 nowhere}\n", "5:11",
     "MX exchange nowhere.example.test. is in this zone but has no A or AAAA"),
    ("srv-target-no-address", GOOD_HEAD + "  _x._tcp: {SRV: 0 0 25 nowhere}\n", "5:18",
     "SRV target nowhere.example.test. is in this zone but has no A or AAAA"),
    ("srv-target-cname", GOOD_HEAD + "  _x._tcp: {SRV: 0 0 25 b}\n  b: {CNAME: ns1}\n", "5:18", "SRV target b.example.test. is a CNAME"),
    ("null-mx-mixed", GOOD_HEAD + '  m:\n    MX: ["0 .", "10 ns1"]\n', "6:10", "null MX (0 .) should be the only MX record"),
    ("null-mx-preference", GOOD_HEAD + '  m: {MX: "10 ."}\n', "5:11", "null MX should have preference 0, not 10"),
    ("duplicate-record", GOOD_HEAD + "  www: {A: [192.0.2.9, 192.0.2.9]}\n", "5:24", "duplicate record ignored: same A data as line 5"),
    ("duplicate-record-case", GOOD_HEAD + "  www: {RP: [mbox.example.org. txt, MBOX.example.org. TXT]}\n", "5:37",
     "duplicate record ignored: same RP data as line 5"),
]


@pytest.mark.slow  # a CLI subprocess per case
@pytest.mark.parametrize("body,position,fragment", [c[1:] for c in WARNING_CASES], ids=[c[0] for c in WARNING_CASES])
def test_warning_is_reported_and_the_zone_loads(tmp_path: Path, body: str, position: str, fragment: str) -> None:
    path = write_zone(tmp_path, body)
    zone, problems = load_zone_file(path)
    assert zone is not None, [str(p) for p in problems]
    texts = [str(p) for p in problems]
    assert all(p.warning for p in problems), texts
    assert any(t.startswith(f"{path}:{position}: warning: ") and fragment in t for t in texts), texts
    assert run_check(path).returncode == 0
    strict = run_check(path, "--strict")
    assert strict.returncode == 1 and "--strict: warnings fail the check" in strict.stderr


def test_duplicates_are_served_once(tmp_path: Path) -> None:
    path = write_zone(tmp_path, GOOD_HEAD + "  www: {A: [192.0.2.9, 192.0.2.9, 192.0.2.8]}\n")
    zone, _ = load_zone_file(path)
    assert zone is not None
    assert [str(r) for r in zone.nodes[names.from_text("www.example.test.")].rrsets[QTYPE.A].rdatas] == \
        ["192.0.2.9", "192.0.2.8"]


@pytest.mark.parametrize("body,position,fragment", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_error_is_reported_at_its_place(tmp_path: Path, body: str, position: str, fragment: str) -> None:
    path = write_zone(tmp_path, body)
    zone, problems = load_zone_file(path)
    assert zone is None, "a zone with an error must not load"
    texts = [str(p) for p in problems if not p.warning]
    expected = f"{path}:{position}: "
    assert any(t.startswith(expected) and fragment in t for t in texts), texts


def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    path = write_zone(tmp_path, GOOD_HEAD + """\
          a: {MX: 10 192.0.2.25}
          b: {A: 192.0.2.300}
          c: {TXT: [ok, {text: [fine]}], CNAME: ns1}
        """.replace("          ", "  "))
    result = run_check(path)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith(str(path))]
    assert len(lines) == 3, result.stdout
    assert "3 error(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_warnings_keep_exit_0(tmp_path: Path) -> None:
    """Missing glue for a delegation and a reversed-looking MX are warnings only."""
    zone_a = write_zone(tmp_path, GOOD_HEAD + "  sub: {NS: ns.sub}\n  m: {MX: 10 example.org.}\n")
    zone_b = write_zone(tmp_path, GOOD_HEAD.replace("ns1]", "ns1.example.test.]").replace("  ns1: {A: 192.0.2.1}\n", ""),
                        name="example.org.yaml")
    result = run_check(zone_a, zone_b)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{zone_a}:5:" in result.stdout and "warning: delegation sub.example.test.: no glue address" in result.stdout
    assert "warning: MX at m.example.test. points at example.org., the apex of another served zone" in result.stdout


def test_shipped_zones_are_valid() -> None:
    result = run_check(ROOT / "zones")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stderr


def test_missing_path_fails(tmp_path: Path) -> None:
    result = run_check(tmp_path / "nope.yaml")
    assert result.returncode == 1
    assert "no such file" in result.stdout


def test_short_and_full_forms_are_the_same(tmp_path: Path) -> None:
    (tmp_path / "short").mkdir()
    (tmp_path / "full").mkdir()
    short = write_zone(tmp_path / "short", GOOD_HEAD + """\
      m: {MX: ["10 ns1"], TXT: hello, SRV: "1 2 3 ns1", CAA: '0 issue "ca.example"', PTR: ns1}
      a: {A: 192.0.2.7, AAAA: "2001:db8::7"}
    """.replace("      ", "  "))
    full = write_zone(tmp_path / "full", GOOD_HEAD + """\
      m:
        MX: {preference: 10, exchange: ns1.example.test.}
        TXT: {text: [hello]}
        SRV: {priority: 1, weight: 2, port: 3, target: ns1}
        CAA: {flags: 0, tag: issue, value: ca.example}
        PTR: {ptrdname: ns1}
      a: {A: {address: 192.0.2.7}, AAAA: {address: "2001:db8::7"}}
    """.replace("      ", "  "))
    zone_short, p1 = load_zone_file(short)
    zone_full, p2 = load_zone_file(full)
    assert zone_short is not None and zone_full is not None, (p1, p2)
    def data(zone):
        return {(r.name, r.rtype, r.ttl, tuple(str(d) for d in r.rdatas)) for r in zone.rrsets() if r.rtype != QTYPE.SOA}
    assert data(zone_short) == data(zone_full)


def test_soa_defaults(tmp_path: Path) -> None:
    """SOA may be left out: mname = first NS, rname = hostmaster, serial = generated
    (the time, for content never seen before)."""
    path = write_zone(tmp_path, GOOD_HEAD)
    before = int(time.time())
    zone, problems = load_zone_file(path)
    assert zone is not None, problems
    soa = zone.soa.rdatas[0]
    assert names.from_dnslabel(soa.mname) == names.from_text("ns1.example.test.")
    assert names.from_dnslabel(soa.rname) == names.from_text("hostmaster.example.test.")
    assert before <= soa.times[0] <= time.time()
    assert soa.times[1:] == (14400, 3600, 1209600, 3600)


def test_rname_as_mail_address(tmp_path: Path) -> None:
    path = write_zone(tmp_path, GOOD_HEAD.replace('"@":\n', '"@":\n    SOA: {rname: john.doe@example.test, serial: 7}\n'))
    zone, problems = load_zone_file(path)
    assert zone is not None, problems
    rname = names.from_dnslabel(zone.soa.rdatas[0].rname)
    assert names.labels(rname)[0] == b"john.doe"
    assert zone.serial == 7


def test_names_match_case_insensitively(tmp_path: Path) -> None:
    path = write_zone(tmp_path, GOOD_HEAD + "  MiXeD: {a: 192.0.2.5, Mx: 10 NS1}\n")
    zone, problems = load_zone_file(path)
    assert zone is not None, problems
    node = zone.nodes[names.from_text("mixed.example.test.")]
    assert set(node.rrsets) == {QTYPE.A, QTYPE.MX}


def test_yaml_aliases_cannot_expand_without_bound(tmp_path: Path) -> None:
    """A 'billion laughs' document is rejected with its position, not expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        prev = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([prev] * 10)}]")
    path = write_zone(tmp_path, "\n".join(lines) + "\n" + GOOD_HEAD)
    zone, problems = load_zone_file(path)
    assert zone is None
    assert any("expands to more than" in str(p) for p in problems), problems


def test_master_file_in_a_checked_directory_is_named_with_a_hint(tmp_path: Path) -> None:
    write_zone(tmp_path, GOOD_HEAD)
    (tmp_path / "example.com.zone").write_text("$TTL 300\n")
    (tmp_path / "example.test.yaml~").write_text("an editor's backup: not worth a word\n")
    result = run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"{tmp_path / 'example.com.zone'}:1:1: warning: not a YAML zone file, so not served; if it is a master "
            "file, convert it with `authdns import example.com.zone --origin example.com. -o example.com.yaml`"
            in result.stdout)
    assert "yaml~" not in result.stdout
    assert run_check(tmp_path / "example.com.zone").returncode == 1, "named explicitly, it is an error"


def test_root_zone_file(tmp_path: Path) -> None:
    path = write_zone(tmp_path, 'records:\n  "@": {NS: a.root-servers.test.}\n  a.root-servers.test: {A: 192.0.2.1}\n',
                      name="root.yaml")
    zone, problems = load_zone_file(path)
    assert zone is not None and zone.origin == names.ROOT, problems
