"""Differential test over a corpus of production-style master files: NSD serves each
file as it is, authdns serves what ``authdns import`` made of it, and every name and
type of every file must be answered the same.

The corpus (``tests/reference/corpus/``, written for this test, every file accepted by
``named-checkzone`` and, but for ``$GENERATE``, ``nsd-checkzone``):

* ``hostedmail.example`` — a mail hosting provider: SOA with its own TTL and TTL units,
  MX, SPF (TXT and type SPF), DKIM split over two strings, DMARC, MTA-STS, TLS-RPT,
  TLSA for the exchangers, RFC 6186 SRV, CAA, an RRset whose records state two TTLs;
* ``corp.example.com`` — a corporate zone split with ``$INCLUDE`` (one with an origin
  argument, one with its own ``$TTL``), HINFO, RP, SSHFP;
* ``113.0.203.in-addr.arpa`` — a reverse zone built with ``$GENERATE`` (offsets, widths,
  hex), with an RFC 2317 classless delegation;
* ``5.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa`` — an IPv6 reverse zone with nibble ``$GENERATE``;
* ``xn--bcher-kva.example`` — an IDN zone, UTF-8 text, escaped dots and spaces in labels;
* ``registry.example`` — a parent with delegations, glue and DS for signed children
  (SHA-256 and SHA-384 digests), URI;
* ``svc.example`` — SVCB/HTTPS with SvcParams, DNAME inside and out of the zone, LOC,
  NAPTR, OPENPGPKEY, SMIMEA, EUI48/EUI64, AFSDB, KX, CERT, CAA, RFC 3597 ``TYPE65280``.

NSD 4.6 has no ``$GENERATE``, so NSD (and the case list, read with dnspython) get the
file as BIND's ``named-compilezone`` expands it; every other file NSD reads as written,
``$INCLUDE`` and all. authdns imports the original files.

Queries, over UDP (EDNS, 1232 octets) and TCP: every (owner, type) in the file, a type
the owner lacks (NODATA), a name that does not exist (NXDOMAIN), names below every
DNAME and delegation, and an owner in mixed case. Compared as in
``test_nsd_differential.py``: rcode, flags, question, each section with TTLs, counts,
OPT, after NSD's apex NS in authority is taken out (``differential.without_apex_ns``);
the kept differences are in ``ALLOWED`` with the reason.

Skipped when ``nsd`` or ``named-compilezone`` is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import dns.message
import dns.name
import dns.rdatatype
import dns.zone
import pytest

from conftest import ServerProcess, run_authdns, start_server, stop_server
from differential import NsdProcess, View, differences, exchange, run_nsd, stop_nsd, view, without_apex_ns, zone_of
from nsd_support import NSD

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

COMPILEZONE = shutil.which("named-compilezone") or (
    "/usr/sbin/named-compilezone" if Path("/usr/sbin/named-compilezone").exists() else None)
if NSD is None or COMPILEZONE is None:
    pytest.skip("nsd and named-compilezone (bind9-utils) are needed", allow_module_level=True)

CORPUS = Path(__file__).resolve().parent / "corpus"
ZONE_FILES = sorted(CORPUS.glob("*.zone"))
ORIGINS = frozenset(path.name[: -len(".zone")].lower() + "." for path in ZONE_FILES)
ABSENT_TYPE = "MINFO"  # a type no corpus owner has: its query is NODATA where the name exists


def origin_of(path: Path) -> str:
    return path.name[: -len(".zone")] + "."


def expanded(path: Path, target: Path) -> None:
    """BIND's reading of a master file, written out whole: ``$INCLUDE`` and
    ``$GENERATE`` expanded, one record per line, absolute names."""
    result = subprocess.run([COMPILEZONE, "-q", "-i", "none", "-k", "ignore", "-o", str(target), origin_of(path),
                             path.name], cwd=path.parent, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"named-compilezone {path.name}:\n{result.stdout}{result.stderr}"


# ---------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def bind_view(work: Path) -> dict[str, dns.zone.Zone]:
    """Each zone as BIND reads it (dnspython parses BIND's expansion): the case list."""
    target = work / "expanded"
    target.mkdir()
    zones = {}
    for path in ZONE_FILES:
        expanded(path, target / path.name)
        zones[origin_of(path)] = dns.zone.from_file(str(target / path.name), origin_of(path), relativize=False)
    return zones


@pytest.fixture(scope="module")
def nsd(work: Path, bind_view: dict[str, dns.zone.Zone]) -> Iterator[NsdProcess]:
    """NSD over a copy of the corpus; a file with ``$GENERATE`` replaced by BIND's expansion."""
    zonesdir = work / "nsdzones"
    shutil.copytree(CORPUS, zonesdir)
    for path in ZONE_FILES:
        if "$GENERATE" in path.read_text():
            shutil.copy(work / "expanded" / path.name, zonesdir / path.name)
    base = work / "nsd"
    base.mkdir()
    process = run_nsd(base, zonesdir, [(origin_of(path), path.name) for path in ZONE_FILES], "hostedmail.example.")
    try:
        yield process
    finally:
        stop_nsd(process)


def authdns_import(path: Path, target: Path) -> subprocess.CompletedProcess:
    return run_authdns("import", path, "-o", target, timeout=120)


@pytest.fixture(scope="module")
def authdns(work: Path) -> Iterator[ServerProcess]:
    """``authdns import`` of each original file into a zones directory, then ``serve``."""
    zones = work / "zones"
    zones.mkdir()
    for path in ZONE_FILES:
        result = authdns_import(path, zones / f"{origin_of(path)}yaml")
        assert result.returncode == 0, f"import {path.name}:\n{result.stderr}"
    server = start_server(zones)
    try:
        yield server
    finally:
        stop_server(server.process)


# ---------------------------------------------------------------- the queries


@dataclass(frozen=True)
class Query:
    qname: str
    qtype: str
    why: str

    def wire(self, tcp: bool) -> bytes:
        options = {} if tcp else {"use_edns": 0, "payload": 1232}
        message = dns.message.make_query(self.qname, self.qtype, **options)
        message.flags = 0
        return message.to_wire()


def queries(origin: str, zone: dns.zone.Zone) -> list[Query]:
    found: list[Query] = []
    cuts = [name for name, node in zone.items() if name != zone.origin and node.get_rdataset(1, dns.rdatatype.NS)]
    for name, node in sorted(zone.items()):
        text = name.to_text()
        types = {rdataset.rdtype for rdataset in node}
        for rdtype in sorted(types):
            found.append(Query(text, dns.rdatatype.to_text(rdtype), "in the file"))
        found.append(Query(text, ABSENT_TYPE, "a type the name lacks"))
        if dns.rdatatype.DNAME in types:
            found += [Query("www." + text, "A", "below a DNAME"), Query("a.b." + text, "TXT", "below a DNAME")]
    for cut in cuts:
        found.append(Query("host." + cut.to_text(), "A", "below a delegation"))
    found.append(Query("no-such-name." + origin, "A", "NXDOMAIN"))
    found.append(Query("deeper.no-such-name." + origin, "TXT", "NXDOMAIN"))
    first = next(name for name in sorted(zone.keys()) if name != zone.origin)
    mixed = "".join(char.upper() if index % 2 else char for index, char in enumerate(first.to_text()))
    found.append(Query(mixed, "A", "mixed case"))
    return found


# ---------------------------------------------------------------- kept differences


@dataclass(frozen=True)
class Allowed:
    reason: str
    fields: tuple[str, ...]
    applies: Callable[[Query, View, View], bool]


def _additional_from_other_zones(query: Query, nsd: View, ours: View) -> bool:
    extra = ours.additional - nsd.additional
    home = zone_of(query.qname, ORIGINS)
    return bool(extra) and nsd.additional <= ours.additional and all(
        key[3] in ("A", "AAAA") and zone_of(key[0], ORIGINS) not in (None, home) for key in extra)


ALLOWED: dict[str, Allowed] = {
    "additional-other-zone": Allowed(
        "RFC 1034 §4.3.2 step 6: authdns also adds the addresses of MX/NS/SRV targets that "
        "lie in another zone it serves (the reverse zones' NS ns1.hostedmail.example); NSD "
        "takes additional data from the answer's own zone only (as in test_nsd_differential).",
        ("additional", "counts"), _additional_from_other_zones),
}


def compare(port_nsd: int, port_ours: int, query: Query, tcp: bool) -> str | None:
    """None when both answer alike (or differ only as ALLOWED says), else a report."""
    wire = query.wire(tcp)
    theirs = view(exchange(port_nsd, wire, tcp=tcp))
    ours = view(exchange(port_ours, wire, tcp=tcp))
    if theirs is not None:
        theirs = without_apex_ns(theirs, ORIGINS)
    differing = differences(theirs, ours)
    if differing and theirs is not None and ours is not None:
        for allowed in ALLOWED.values():
            if allowed.applies(query, theirs, ours):
                differing = [name for name in differing if name not in allowed.fields]
    if not differing:
        return None
    return (f"{query.qname} {query.qtype} ({query.why}) differs in {differing}\n"
            f"NSD:\n{theirs.show() if theirs else 'no reply'}\nauthdns:\n{ours.show() if ours else 'no reply'}")


# ---------------------------------------------------------------- tests


def test_the_corpus_is_what_the_issue_asks_for(bind_view: dict[str, dns.zone.Zone]) -> None:
    assert len(ZONE_FILES) >= 6
    types = {dns.rdatatype.to_text(rdataset.rdtype) for zone in bind_view.values() for _, node in zone.items()
             for rdataset in node}
    wanted = {"DS", "TLSA", "SSHFP", "NAPTR", "HTTPS", "SVCB", "DNAME", "HINFO", "LOC", "RP", "URI", "SPF", "CAA",
              "OPENPGPKEY", "SMIMEA", "SRV", "PTR", "TYPE65280"}
    assert wanted <= types, wanted - types
    texts = {path.name: path.read_text() for path in CORPUS.iterdir()}
    assert any("$INCLUDE" in text for text in texts.values()) and any("$GENERATE" in text for text in texts.values())


@pytest.mark.parametrize("path", ZONE_FILES, ids=[path.name for path in ZONE_FILES])
def test_import_exits_0_and_warnings_name_the_master_file_line(path: Path, tmp_path: Path) -> None:
    """Every corpus file imports with exit 0 and no error; warnings point into the
    master file (file:line:column)."""
    result = authdns_import(path, tmp_path / f"{origin_of(path)}yaml")
    assert result.returncode == 0, result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith(f"{path}:") and ": warning: " in line, line


def records(zone: dns.zone.Zone) -> set[tuple[str, int, str, str]]:
    """Every record with its TTL, names lowercased (the case of owners is not data)."""
    return {(name.to_text().lower(), rdataset.ttl, dns.rdatatype.to_text(rdataset.rdtype), rdata.to_text().lower())
            for name, node in zone.items() for rdataset in node for rdata in rdataset}


@pytest.mark.parametrize("path", ZONE_FILES, ids=[path.name for path in ZONE_FILES])
def test_import_then_export_keeps_every_record_and_ttl(path: Path, tmp_path: Path,
                                                       bind_view: dict[str, dns.zone.Zone]) -> None:
    """``import`` then ``export``: the master file holds exactly the records and TTLs
    BIND reads from the original (dnspython compares them)."""
    origin = origin_of(path)
    yaml_path = tmp_path / f"{origin}yaml"
    assert authdns_import(path, yaml_path).returncode == 0
    exported = run_authdns("export", yaml_path, timeout=120)
    assert exported.returncode == 0, exported.stderr
    again = dns.zone.from_text(exported.stdout, origin, relativize=False)
    assert records(again) == records(bind_view[origin])


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("path", ZONE_FILES, ids=[path.name for path in ZONE_FILES])
def test_answers_as_nsd_answers_the_original(path: Path, transport: str, bind_view: dict[str, dns.zone.Zone],
                                             nsd: NsdProcess, authdns: ServerProcess) -> None:
    origin = origin_of(path)
    asked = queries(origin, bind_view[origin])
    reports = [report for query in asked
               if (report := compare(nsd.port, authdns.port, query, transport == "tcp")) is not None]
    assert not reports, f"{len(reports)} of {len(asked)} queries differ:\n\n" + "\n\n".join(reports)
    # Not two servers refusing alike: the zone is served, its data answered with AA.
    soa = view(exchange(authdns.port, Query(origin, "SOA", "apex").wire(transport == "tcp"), tcp=transport == "tcp"))
    assert soa is not None and soa.rcode == "NOERROR" and "AA" in soa.flags and len(soa.answer) == 1
