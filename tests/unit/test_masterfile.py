"""`authdns import` and `authdns export`: RFC 1035 master files ↔ YAML zones.

Checks: a master file using $ORIGIN, $TTL, relative names, parentheses, comments,
omitted owners and TTL units imports to YAML that loads to exactly the records
dnspython reads from the original; exporting every shipped zone gives a master file
dnspython reads back to the same records; export → import → load keeps every record;
a broken master file gives `file:line: message` and exit 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from authdns import names
from authdns.masterfile import export_zone, import_master
from authdns.snapshot import load_zone_file, zone_files

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


def test_import_keeps_every_record(tmp_path: Path) -> None:
    yaml_text = import_master(MASTER, "example.test.")
    path = tmp_path / "example.test.yaml"
    path.write_text(yaml_text)
    assert records_of_yaml(path) == records_of_master(MASTER, "example.test.")


@pytest.mark.parametrize("path", zone_files([ROOT / "zones"]), ids=lambda p: p.name)
def test_export_then_import_round_trip(tmp_path: Path, path: Path) -> None:
    zone, problems = load_zone_file(path)
    assert zone is not None, problems
    exported = export_zone(zone)
    original = records_of_master(exported, names.to_text(zone.origin))
    assert len(original) == zone.record_count
    again = tmp_path / path.name
    again.write_text(import_master(exported, names.to_text(zone.origin)))
    assert records_of_yaml(again) == original


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "authdns", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, input=stdin)


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


def test_cli_import_refuses_unsupported_types(tmp_path: Path) -> None:
    master = tmp_path / "hinfo.zone"
    master.write_text("$TTL 3600\n@ IN NS ns1\nns1 IN A 192.0.2.1\nns1 IN HINFO PC Linux\n")
    result = run("import", str(master), "--origin", "example.test")
    assert result.returncode == 1
    assert "HINFO" in result.stderr and "Traceback" not in result.stderr


def test_cli_export_of_invalid_zone_fails(tmp_path: Path) -> None:
    bad = tmp_path / "example.test.yaml"
    bad.write_text("records:\n  www: {A: 192.0.2.300}\n")
    result = run("export", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2:" in result.stderr
