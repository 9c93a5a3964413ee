"""Import → check → serve, as a user moving a zone from BIND or NSD does it (issue 12).

Checks: a master file with `$INCLUDE` (nested, with an origin argument), `$GENERATE`, an
SOA whose TTL differs from `$TTL`, TTL units and modern types is converted by
`authdns import FILE -o zones/ORIGIN.yaml`, passes `authdns check`, and a running
server answers each name with the records and TTLs the file gives (dnspython reads the
original as the reference); the same file piped to `authdns import -` gives the same
YAML; a master file dropped into the watched zones directory beside it is reported in
the log with the import command, and the YAML that command writes is then served
without a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest

from conftest import ROOT, run_authdns, wait_until

HASH = "0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"

MAIN = f"""\
; corp.test as a BIND primary has it
$ORIGIN corp.test.
$TTL 4h
@       86400 IN SOA ns1 hostmaster (
                2026120201 ; serial
                2h         ; refresh
                30m        ; retry
                2w         ; expire
                5m )       ; negative TTL
        IN NS  ns1
        IN NS  ns2.example.net.
        IN MX  10 mx1
        IN TXT "v=spf1 mx -all"
ns1     IN A   192.0.2.1
mx1     IN A   192.0.2.25
_25._tcp.mx1 1h IN TLSA 3 1 1 {HASH}
$INCLUDE include/web.inc
$INCLUDE include/lab.inc lab.corp.test.
$GENERATE 10-12 printer$ 300 IN A 192.0.2.$
after   IN A   192.0.2.99
"""
WEB = """\
www     IN A     192.0.2.80
        IN HTTPS 1 . alpn="h2,h3"
old     IN DNAME www.example.net.
$INCLUDE include/more.inc
"""
MORE = "intranet IN CNAME www\n"
LAB = "@ IN TXT \"lab records\"\nbench IN A 192.0.2.150\n"


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_authdns(*args, stdin=stdin, cwd=cwd)


def write_master(directory: Path) -> Path:
    (directory / "include").mkdir(parents=True)
    (directory / "include" / "web.inc").write_text(WEB)
    (directory / "include" / "more.inc").write_text(MORE)
    (directory / "include" / "lab.inc").write_text(LAB)
    master = directory / "corp.test.zone"
    master.write_text(MAIN)
    return master


@pytest.mark.slow
def test_import_check_serve(tmp_path: Path, server_factory) -> None:
    master = write_master(tmp_path / "bind")
    zones = tmp_path / "zones"
    zones.mkdir()
    imported = run("import", str(master), "-o", str(zones / "corp.test.yaml"))
    assert imported.returncode == 0, imported.stderr
    checked = run("check", str(zones))
    assert checked.returncode == 0 and "0 error(s)" in checked.stderr, checked.stdout + checked.stderr
    piped = run("import", "-", "--origin", "corp.test", stdin=MAIN, cwd=master.parent)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.split("\n", 1)[1] == (zones / "corp.test.yaml").read_text().split("\n", 1)[1]

    reference = _reference(master)
    server = server_factory(zones)
    for (name, rtype), (ttl, rdatas) in reference.items():
        reply = server.query(name, rtype, tcp=True)
        assert reply.rcode() == dns.rcode.NOERROR, (name, rtype, reply)
        (rrset,) = [r for r in reply.answer if r.name.to_text() == name and dns.rdatatype.to_text(r.rdtype) == rtype]
        assert (rrset.ttl, {r.to_text() for r in rrset}) == (ttl, rdatas), (name, rtype)
    assert len(reference) >= 15


def _reference(master: Path) -> dict[tuple[str, str], tuple[int, set[str]]]:
    """The file as dnspython reads it (run from its directory: its $INCLUDE paths, like
    BIND's and NSD's, start there)."""
    code = ("import dns.zone, json, sys; z = dns.zone.from_file(sys.argv[1], origin='corp.test.', relativize=False, "
            "allow_include=True, check_origin=False); print(json.dumps([[n.to_text(), __import__('dns.rdatatype')"
            ".rdatatype.to_text(r.rdtype), r.ttl, sorted(x.to_text() for x in r)] for n, node in z.nodes.items() "
            "for r in node.rdatasets]))")
    out = subprocess.run([sys.executable, "-c", code, master.name], cwd=master.parent, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return {(name, rtype): (ttl, set(rdatas)) for name, rtype, ttl, rdatas in json.loads(out)}


@pytest.mark.slow
def test_master_file_dropped_into_zones_is_named_then_imported_live(tmp_path: Path, server_factory) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "first.test.yaml").write_text('records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n')
    server = server_factory(zones)
    (zones / "dropped.test.zone").write_text("$TTL 300\n@ SOA ns1 hostmaster 7 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.7\n")
    line = server.wait_for_log(r"dropped\.test\.zone:1:1: warning: not a YAML zone file")
    command = line.split("`")[1].split()
    assert command[:2] == ["authdns", "import"]
    assert server.query("dropped.test.", "SOA").rcode() == dns.rcode.REFUSED, "not served as it is"
    result = run(*command[1:], cwd=zones)
    assert result.returncode == 0, result.stderr

    def served() -> bool | None:
        reply = server.query("dropped.test.", "SOA")
        return True if reply.answer and reply.answer[0][0].serial == 7 else None

    wait_until(served, timeout=10)
