"""`authdns import` and `authdns export`: RFC 1035 master files ↔ YAML zones.

Checks: a master file using $ORIGIN, $TTL, relative names, parentheses, comments,
omitted owners and TTL units imports to YAML that loads to exactly the records
dnspython reads from the original (an independent reader); so does a file of every
modern type, an SOA whose TTL differs from the rest, `$INCLUDE` (nested, relative to the
including file, with an origin argument) and `$GENERATE`; exporting every shipped zone
and the every-type zone gives a master file dnspython reads back to the same records;
export → import → load keeps every record and TTL; each reader rule gives its
`file:line:column` message (errors exit 1, warnings 0); `import -` reads stdin; `-o`
writes atomically; the origin comes from `$ORIGIN` or the file name when not given.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from conftest import run_authdns
from authdns.base import names
from authdns.zones.masterfile import export_zone, import_master
from authdns.zones.masterread import generate_text
from authdns.zones.loader import load_zone_file, zone_files

ROOT = Path(__file__).resolve().parents[2]

MASTER = """\
$ORIGIN example.test.
$TTL 1h
; the apex
@   IN  SOA ns1 hostmaster (
            2026112301 ; serial
            7200       ; refresh
            3600 1209600
            300 )      ; minimum
    IN  NS  ns1
        NS  ns2.example.net.
    300 IN MX 10 mail
        MX  20 mail2.example.test.
    TXT "v=spf1 mx -all" "second \\"quoted\\" string"
    CAA 0 issue "letsencrypt.org"
mail    IN 60 A 192.0.2.25
        AAAA 2001:db8::25
mail2   A   192.0.2.26
ns1     A   192.0.2.1
www     CNAME @
*.wild  A   192.0.2.80
_sip._udp SRV 0 5 5060 mail
$ORIGIN sub.example.test.
host    1d A 192.0.2.99
"""


def records_of_master(text: str, origin: str) -> set[tuple]:
    zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    return {
        (name.to_text().lower(), dns.rdatatype.to_text(rds.rdtype), rds.ttl, rdata.to_text().lower())
        for name, node in zone.nodes.items() for rds in node.rdatasets for rdata in rds
    }


def records_of_yaml(path: Path) -> set[tuple]:
    zone, problems = load_zone_file(path)
    assert zone is not None, [str(p) for p in problems]
    return records_of_master(export_zone(zone), names.to_text(zone.origin))


def imported_yaml(text: str, origin: str, base: Path = Path(".")) -> str:
    result = import_master(text, origin, "<test>", base)
    assert result.yaml is not None, [str(p) for p in result.problems]
    return result.yaml


def test_import_keeps_every_record(tmp_path: Path) -> None:
    path = tmp_path / "example.test.yaml"
    path.write_text(imported_yaml(MASTER, "example.test."))
    assert records_of_yaml(path) == records_of_master(MASTER, "example.test.")


@pytest.mark.parametrize("path", zone_files([ROOT / "zones"]), ids=lambda p: p.name)
def test_export_then_import_round_trip(tmp_path: Path, path: Path) -> None:
    zone, problems = load_zone_file(path)
    assert zone is not None, problems
    exported = export_zone(zone)
    original = records_of_master(exported, names.to_text(zone.origin))
    assert len(original) == zone.record_count
    again = tmp_path / path.name
    again.write_text(imported_yaml(exported, names.to_text(zone.origin)))
    assert records_of_yaml(again) == original


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run_authdns(*args, stdin=stdin)


def test_cli_import_and_export(tmp_path: Path) -> None:
    master = tmp_path / "example.test.zone"
    master.write_text(MASTER)
    imported = run("import", str(master), "--origin", "example.test")
    assert imported.returncode == 0, imported.stderr
    yaml_path = tmp_path / "example.test.yaml"
    yaml_path.write_text(imported.stdout)
    exported = run("export", str(yaml_path))
    assert exported.returncode == 0, exported.stderr
    assert records_of_master(exported.stdout, "example.test.") == records_of_master(MASTER, "example.test.")


def test_cli_import_reports_line_of_a_broken_file(tmp_path: Path) -> None:
    master = tmp_path / "bad.zone"
    master.write_text("$TTL 3600\n@ IN SOA ns1 hostmaster 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 192.0.2.300\n")
    result = run("import", str(master), "--origin", "example.test")
    assert result.returncode == 1
    assert f"{master}:4:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


HASH = "0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"

# Every type the issue names, in master-file form (dnspython reads it as the reference).
EVERY_TYPE = f"""\
$ORIGIN types.test.
$TTL 300
@ 3600 IN SOA ns1 hostmaster 2026120101 7200 3600 1209600 300
@ NS ns1
  MX 10 mx1
  MX 10 mx2
  SPF "v=spf1 mx -all"
  TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtest" "second part of the key"
  CAA 0 issuewild ";"
  CAA 128 iodef "mailto:security@types.test"
ns1 A 192.0.2.1
mx1 A 192.0.2.11
mx2 A 192.0.2.12
  SSHFP 4 2 {HASH}
_25._tcp.mx1 TLSA 3 1 1 {HASH}
child NS ns.child
  DS 60485 8 2 {HASH}
  CDS 60485 8 2 {HASH}
ns.child A 192.0.2.53
sip NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp
www HTTPS 1 . alpn="h2,h3" port=443 ipv4hint=192.0.2.80 ipv6hint=2001:db8::80
  SVCB 0 www2
  A 192.0.2.80
old DNAME new.example.
host HINFO "PC" "Linux"
  LOC 52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m
  RP hostmaster txt
  URI 10 1 "https://types.test/"
  OPENPGPKEY AQIDBAU=
  TYPE65280 \\# 4 0a000001
_smime SMIMEA 3 1 1 {HASH}
nomail MX 0 .
binary TXT "\\200\\201 not utf-8"
"""


def test_every_type_imports_and_loads(tmp_path: Path) -> None:
    """Failed on the old import: "authdns serves SOA, NS, ..." for the first HINFO, and the
    SOA's own TTL made a YAML `check` refused."""
    path = tmp_path / "types.test.yaml"
    path.write_text(imported_yaml(EVERY_TYPE, "types.test."))
    assert records_of_yaml(path) == records_of_master(EVERY_TYPE, "types.test.")
    text = path.read_text()
    assert "SOA:\n      ttl: 3600\n" in text and "TYPE65280: \\# 4 0a000001" in text
    assert "TXT: \\# " in text, "a TXT that is not UTF-8 is written in the RFC 3597 form"


def test_every_type_export_import_round_trip(tmp_path: Path) -> None:
    first = tmp_path / "one" / "types.test.yaml"
    first.parent.mkdir()
    first.write_text(imported_yaml(EVERY_TYPE, "types.test."))
    zone, problems = load_zone_file(first)
    assert zone is not None, problems
    exported = export_zone(zone)
    second = tmp_path / "two" / "types.test.yaml"
    second.parent.mkdir()
    second.write_text(imported_yaml(exported, "types.test."))
    assert records_of_yaml(second) == records_of_yaml(first) == records_of_master(EVERY_TYPE, "types.test.")
    assert second.read_text().split("\n", 1)[1] == first.read_text().split("\n", 1)[1], "the same YAML again"


def test_include_relative_to_the_including_file_with_origin(tmp_path: Path) -> None:
    """Failed on the old import: "zone file directive '$INCLUDE' is not allowed"."""
    (tmp_path / "parts" / "deeper").mkdir(parents=True)
    (tmp_path / "parts" / "mail.inc").write_text("mx A 192.0.2.25\n$INCLUDE deeper/more.inc\nafter A 192.0.2.27\n")
    (tmp_path / "parts" / "deeper" / "more.inc").write_text("inner A 192.0.2.26\n")
    (tmp_path / "parts" / "hosts.inc").write_text("www A 192.0.2.80\n")
    master = ("$TTL 300\n@ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
              "$INCLUDE parts/mail.inc\n$INCLUDE parts/hosts.inc sub.example.test.\n  TXT back\n")
    path = tmp_path / "example.test.yaml"
    path.write_text(imported_yaml(master, "example.test.", tmp_path))
    got = {(name, rtype) for name, rtype, _, _ in records_of_yaml(path)}
    assert {("mx.example.test.", "A"), ("inner.example.test.", "A"), ("after.example.test.", "A"),
            ("www.sub.example.test.", "A"), ("ns1.example.test.", "TXT")} <= got, got


def test_generate_reverse_zone(tmp_path: Path) -> None:
    master = ("$TTL 1d\n@ SOA ns1.example.test. hostmaster.example.test. 1 2 3 4 5\n@ NS ns1.example.test.\n"
              "$GENERATE 1-254 $ PTR host-$.example.test.\n"
              "$GENERATE 0-15/5 ${0,3,n}.v6 PTR h${100,4,x}.example.test.\n")
    path = tmp_path / "2.0.192.in-addr.arpa.yaml"
    path.write_text(imported_yaml(master, "2.0.192.in-addr.arpa."))
    records = records_of_yaml(path)
    ptrs = {name: rdata for name, rtype, _, rdata in records if rtype == "PTR"}
    assert len(ptrs) == 254 + 4
    assert ptrs["77.2.0.192.in-addr.arpa."] == "host-77.example.test."
    assert ptrs["a.0.v6.2.0.192.in-addr.arpa."] == "h006e.example.test."  # 10: nibbles "a.0"; 110 = 0x6e


@pytest.mark.parametrize("template,counter,expected", [
    ("host$", 7, "host7"), ("${1}", 7, "8"), ("${-2,3}", 7, "005"), ("${0,4,x}", 255, "00ff"),
    ("${0,0,X}", 255, "FF"), ("${0,0,o}", 8, "10"), ("${0,0,n}", 0x1a, "a.1"), ("${0,7,N}", 0x1a, "A.1.0.0"),
    ("a$$b", 3, "a$b"), ("\\$", 3, "\\$"),
])
def test_generate_substitution(template: str, counter: int, expected: str) -> None:
    assert generate_text(template, counter) == expected


HEAD = "$TTL 300\n@ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"

# (id, master file after HEAD, "line:column", message fragment, is it an error)
READER_CASES = [
    ("bad-address", "www A 192.0.2.300\n", "5:7", "A: ", True),
    ("out-of-zone", "www.example.org. A 192.0.2.9\n", "5:1", "is out of zone", True),
    ("other-class", "www CH A 192.0.2.9\n", "5:5", "class CH: only class IN is served", True),
    ("unknown-type", "www FROB 1\n", "5:5", "unknown record type 'FROB'", True),
    ("no-rdata", "www TLSA\n", "5:5", "TLSA record has no data", True),
    ("unknown-directive", "$FROB x\n", "5:1", "unknown directive $FROB", True),
    ("include-missing", "$INCLUDE nowhere.inc\n", "5:1", "cannot read", True),
    ("include-loop", "$INCLUDE <test>\n", "5:1", "", True),
    ("unclosed-parenthesis", "www TXT ( \"a\"\n", "6:1", "a ')' is missing", True),
    ("generate-too-many", "$GENERATE 1-70000 h$ A 192.0.2.1\n", "5:11", "makes more than 65536 records", True),
    ("ns-without-address", "@ NS ns2\n", "3:1", "NS target ns2.example.test. is in this zone but has no A", True),
    ("mx-without-address", "@ MX 10 nowhere\n", "5:1", "MX exchange nowhere.example.test. is in this zone", False),
    ("null-mx-preference", "m MX 10 .\n", "5:1", "null MX should have preference 0", False),
    ("duplicate", "www A 192.0.2.9\nwww A 192.0.2.9\n", "6:1", "duplicate A record left out: the same data as line 5",
     False),
    ("ttl-mismatch", "www 60 A 192.0.2.9\nwww 90 A 192.0.2.8\n", "6:1", "the RRset gets the lowest, 60", False),
    ("signed-zone", "www RRSIG A 8 3 300 20300101000000 20200101000000 1 example.test. AAAA\n", "5:5",
     "1 RRSIG record(s) left out: authdns does not sign zones yet", False),
]


@pytest.mark.parametrize("body,position,fragment,is_error", [c[1:] for c in READER_CASES],
                         ids=[c[0] for c in READER_CASES])
def test_reader_rule_reported_at_its_place(tmp_path: Path, body: str, position: str, fragment: str,
                                           is_error: bool) -> None:
    result = import_master(HEAD + body, "example.test.", "<test>", tmp_path)
    texts = [str(p) for p in result.problems if p.warning != is_error]
    assert any(t.startswith(f"<test>:{position}: ") and fragment in t for t in texts), [str(p) for p in result.problems]
    assert (result.yaml is None) == is_error


def test_no_ttl_anywhere_is_warned_with_the_choice(tmp_path: Path) -> None:
    result = import_master("@ SOA ns1 hostmaster 1 2 3 4 600\n@ NS ns1\nns1 900 A 192.0.2.1\nwww A 192.0.2.2\n",
                           "example.test.", "<test>")
    assert result.yaml is not None
    texts = [str(p) for p in result.problems]
    assert any(t.startswith("<test>:1:1: warning: no TTL and no $TTL: using 600, the SOA MINIMUM") for t in texts)
    assert any(t.startswith("<test>:4:1: warning: no TTL and no $TTL: using 900, the last TTL") for t in texts)


def test_cli_export_of_invalid_zone_fails(tmp_path: Path) -> None:
    bad = tmp_path / "example.test.yaml"
    bad.write_text("records:\n  www: {A: 192.0.2.300}\n")
    result = run("export", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2:" in result.stderr


def test_cli_import_from_stdin_with_its_origin(tmp_path: Path) -> None:
    result = run("import", "-", stdin="$ORIGIN example.test.\n" + HEAD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# example.test. imported from <stdin>")
    without = run("import", "-", stdin=HEAD)
    assert without.returncode == 2 and "pass --origin" in without.stderr


def test_cli_import_origin_from_the_file_name_and_output_file(tmp_path: Path) -> None:
    master = tmp_path / "db.example.test"
    master.write_text(HEAD)
    target = tmp_path / "zones" / "example.test.yaml"
    target.parent.mkdir()
    result = run("import", str(master), "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and target.read_text().startswith("# example.test. imported from")
    assert [p.name for p in target.parent.iterdir()] == ["example.test.yaml"], "no temporary left behind"
    broken = tmp_path / "example.test.zone"
    broken.write_text(HEAD + "www A 300.1.1.1\n")
    assert run("import", str(broken), "-o", str(target)).returncode == 1
    assert target.read_text().startswith("# example.test. imported from"), "a failed import leaves the file alone"


def test_include_path_as_bind_and_nsd_resolve_it(tmp_path: Path) -> None:
    """A nested include written relative to the zone directory (BIND's and NSD's working
    directory) is found too, when it is not beside the including file."""
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.inc").write_text("$INCLUDE parts/b.inc\n")
    (tmp_path / "parts" / "b.inc").write_text("deep A 192.0.2.44\n")
    path = tmp_path / "example.test.yaml"
    path.write_text(imported_yaml(HEAD + "$INCLUDE parts/a.inc\n", "example.test.", tmp_path))
    assert ("deep.example.test.", "A", 300, "192.0.2.44") in records_of_yaml(path)


def test_cli_import_strict_fails_on_warnings(tmp_path: Path) -> None:
    master = tmp_path / "example.test.zone"
    master.write_text(HEAD + "www A 192.0.2.9\nwww A 192.0.2.9\n")
    assert run("import", str(master)).returncode == 0
    strict = run("import", str(master), "--strict")
    assert strict.returncode == 1 and strict.stdout == "" and "1 warning(s) (--strict)" in strict.stderr


from hypothesis import HealthCheck, given, settings, strategies as st

_OWNERS = ["@", "www", "mail", "a.b", "xn--bcher-kva", "*.wild", "with\\.dot"]
_DATA = {
    "A": st.sampled_from(["192.0.2.1", "192.0.2.2", "198.51.100.7"]),
    "MX": st.sampled_from(["10 mail", "20 mx.example.net.", "0 ."]),
    "TXT": st.sampled_from(['"one"', '"two words" "and more"', '"semi;colon" "(paren)"', '"back\\\\slash \\"q\\""']),
    "SRV": st.sampled_from(["0 5 5060 mail", "1 1 443 www.example.net."]),
}


@st.composite
def _master_files(draw) -> str:
    """A master file with the same records written in varied style: owners repeated or
    left blank, TTL and class in either order or left out, parentheses across lines,
    comments, tabs."""
    lines = ["$TTL 300", "@ IN SOA ns1 hostmaster ( 1 ; serial", "  2 3 4 5 )", "@ NS ns1", "ns1 A 192.0.2.53"]
    previous = "ns1"
    for _ in range(draw(st.integers(1, 12))):
        owner = draw(st.sampled_from(_OWNERS))
        rtype = draw(st.sampled_from(sorted(_DATA)))
        data = draw(_DATA[rtype])
        ttl = draw(st.sampled_from(["", "300 ", "1h ", "600 "]))
        klass = draw(st.sampled_from(["", "IN "]))
        head = owner if owner != previous or draw(st.booleans()) else draw(st.sampled_from([" ", "\t", "    "]))
        fields = f"{ttl}{klass}" if draw(st.booleans()) else f"{klass}{ttl}"
        if draw(st.booleans()):  # across lines: the break goes between fields, never inside quotes
            data = "( " + (data.replace(" ", " ; note\n   ", 1) if rtype != "TXT" else data + "\n") + " )"
        lines.append(f"{head}\t{fields}{rtype} {data}" + (" ; comment" if draw(st.booleans()) else ""))
        previous = owner
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_master_files())
def test_import_reads_what_dnspython_reads(tmp_path: Path, text: str) -> None:
    """Our reader against dnspython's (an independent one) on the same text."""
    result = import_master(text, "example.test.", "<test>")
    assert result.yaml is not None, [str(p) for p in result.problems]
    path = tmp_path / "example.test.yaml"
    path.write_text(result.yaml)
    assert records_of_yaml(path) == records_of_master(text, "example.test.")
