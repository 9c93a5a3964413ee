"""RFC 1035 master files ↔ authdns zones: ``authdns import`` and ``authdns export``.

Import reads the file with ``zones/masterread.py`` (every record at its ``file:line:column``,
every type through dnspython), writes the YAML format (README, "Record types"), and runs
``check``'s rules on the result, so what it prints serves. Export writes one
absolute-named record per line from a loaded ``Zone``, which NSD, Knot and BIND read as
is. Serves nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import yaml
from dnslib import QTYPE

from authdns.base import names
from authdns.zones.masterread import MasterRRset, group, read_master
from authdns.base.names import Name
from authdns.zones.records import GENERIC_PREFIX
from authdns.base.rrtypes import WireRdata, type_code, type_name
from authdns.zones.yamltree import Mapping as YamlMapping, Where, parse_tree
from authdns.zones.zone import Zone, build_zone
from authdns.zones.zonefile import Problem, read_zone_text


# ---------------------------------------------------------------- export


def _quote(data: bytes) -> str:
    """A <character-string> in quotes, escaping what RFC 1035 §5.1 requires."""
    out = []
    for octet in data:
        if octet in (0x22, 0x5C):
            out.append("\\" + chr(octet))
        elif 0x20 <= octet <= 0x7E:
            out.append(chr(octet))
        else:
            out.append(f"\\{octet:03d}")
    return '"' + "".join(out) + '"'


def rdata_text(rtype: int, rdata) -> str:
    """Presentation form of one rdata, names absolute."""
    if isinstance(rdata, WireRdata):
        return repr(rdata)  # dnspython's presentation of the wire form
    name = lambda label: names.to_text(names.from_dnslabel(label))  # noqa: E731
    if rtype in (QTYPE.A, QTYPE.AAAA):
        return rdata.toZone()
    if rtype == QTYPE.MX:
        return f"{rdata.preference} {name(rdata.label)}"
    if rtype in (QTYPE.NS, QTYPE.CNAME, QTYPE.PTR):
        return name(rdata.label)
    if rtype == QTYPE.SRV:
        return f"{rdata.priority} {rdata.weight} {rdata.port} {name(rdata.target)}"
    if rtype == QTYPE.TXT:
        return " ".join(_quote(part) for part in rdata.data)
    if rtype == QTYPE.CAA:
        return f"{rdata.flags} {rdata.tag} {_quote(rdata.value.encode())}"
    if rtype == QTYPE.SOA:
        serial, refresh, retry, expire, minimum = rdata.times
        return f"{name(rdata.mname)} {name(rdata.rname)} {serial} {refresh} {retry} {expire} {minimum}"
    raise ValueError(f"no presentation form for type {rtype}")


def export_zone(zone: Zone) -> str:
    """The zone as a master file: SOA first, then every RRset by name and type."""
    lines = [
        f"; {names.to_text(zone.origin)} exported by authdns from {zone.path}",
        f"$ORIGIN {names.to_text(zone.origin)}",
    ]
    rrsets = sorted(zone.rrsets(), key=lambda r: (r.rtype != QTYPE.SOA, names.labels(r.name)[::-1], r.rtype))
    for rrset in rrsets:
        owner = names.to_text(rrset.name)
        for rdata in rrset.rdatas:
            lines.append(f"{owner}\t{rrset.ttl}\tIN\t{type_name(rrset.rtype)}\t{rdata_text(rrset.rtype, rdata)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- import


def _relative(name: dns.name.Name, origin: dns.name.Name) -> str:
    return names.relative_text(names.from_text(name.to_text()), names.from_text(origin.to_text()))


def _generic(rdata) -> str:
    """RFC 3597 §5 form: what a record YAML cannot hold as text becomes."""
    wire = rdata.to_wire()
    return f"\\# {len(wire)} {wire.hex()}" if wire else "\\# 0"


def _text_value(rdata):
    """TXT/SPF in the YAML short form: each string verbatim; a record YAML cannot write as
    text (octets that are not UTF-8, or a string the reader would take for RFC 3597's
    ``\\#``) in the generic form."""
    try:
        parts = [part.decode("utf-8") for part in rdata.strings]
    except UnicodeDecodeError:
        return _generic(rdata)
    if parts and parts[0].startswith(GENERIC_PREFIX + " ") and len(parts) == 1:
        return _generic(rdata)
    return parts[0] if len(parts) == 1 else parts


def _record_value(rdata, origin: dns.name.Name):
    """One record as the YAML zone format writes it (README, "Record types")."""
    rtype = dns.rdatatype.to_text(rdata.rdtype)
    rel = lambda n: _relative(n, origin)  # noqa: E731
    if rtype in ("A", "AAAA"):
        return rdata.address
    if rtype == "MX":
        return f"{rdata.preference} {rel(rdata.exchange)}"
    if rtype in ("NS", "CNAME", "PTR"):
        return rel(rdata.target)
    if rtype == "SRV":
        return f"{rdata.priority} {rdata.weight} {rdata.port} {rel(rdata.target)}"
    if rtype in ("TXT", "SPF"):
        return _text_value(rdata)
    if rtype == "CAA":
        try:
            return {"flags": rdata.flags, "tag": rdata.tag.decode("ascii"), "value": rdata.value.decode("utf-8")}
        except UnicodeDecodeError:
            return _generic(rdata)
    if rtype == "SOA":
        return {
            "mname": rel(rdata.mname), "rname": rel(rdata.rname), "serial": rdata.serial,
            "refresh": rdata.refresh, "retry": rdata.retry, "expire": rdata.expire, "minimum": rdata.minimum,
        }
    return rdata.to_text(origin=origin, relativize=True)


def _rrset_value(rrset: MasterRRset, origin: dns.name.Name, default_ttl: int):
    values = [_record_value(rdata, origin) for rdata in rrset.rdatas]
    if rrset.rtype in (dns.rdatatype.TXT, dns.rdatatype.SPF):
        # A list at the RRset level means several records; a record of several strings
        # is itself a list, so a lone multi-string record needs the outer list too.
        body = values if len(values) > 1 or isinstance(values[0], list) else values[0]
    else:
        body = values if len(values) > 1 else values[0]
    if rrset.ttl != default_ttl:
        return {"ttl": rrset.ttl, "records": body if isinstance(body, list) else [body]}
    return body


@dataclass(slots=True)
class Imported:
    """What ``import`` made: the YAML (None when an error stops it) and every problem,
    each at its place in the master file."""

    yaml: str | None
    problems: list[Problem]


def _canonical_order(rrsets: list[MasterRRset], origin: dns.name.Name) -> list[MasterRRset]:
    """The apex first, then names in DNSSEC canonical order (RFC 4034 §6.1); SOA first at
    the apex, then types by number."""
    return sorted(rrsets, key=lambda r: (r.owner != origin, r.owner, r.rtype != dns.rdatatype.SOA, r.rtype))


def _document(rrsets: list[MasterRRset], origin: dns.name.Name) -> dict:
    ttls = Counter(rrset.ttl for rrset in rrsets)
    default_ttl = ttls.most_common(1)[0][0] if ttls else 3600
    records: dict[str, dict] = {}
    for rrset in _canonical_order(rrsets, origin):
        owner = records.setdefault(_relative(rrset.owner, origin), {})
        owner[dns.rdatatype.to_text(rrset.rtype)] = _rrset_value(rrset, origin, default_ttl)
    return {"ttl": default_ttl, "records": records}


def _positions(text: str, origin: Name) -> list[tuple[int, Name, int]]:
    """(line, owner, type) of every type key in the YAML written, in line order: where a
    finding of ``check`` about that line belongs."""
    tree, _ = parse_tree(text, "<import>")
    found: list[tuple[int, Name, int]] = []
    records = tree.get("records") if isinstance(tree, YamlMapping) else None
    if not isinstance(records, YamlMapping):
        return found
    for owner_key, types in records.items:
        owner = names.from_text(owner_key.text, origin)
        found.append((owner_key.where.line, owner, -1))
        if isinstance(types, YamlMapping):
            found.extend((key.where.line, owner, type_code(key.text)) for key, _ in types.items)
    return sorted(found)


def _check(text: str, origin: Name, where_of: dict[tuple[Name, int], Where], path: str) -> list[Problem]:
    """``authdns check``'s findings on the YAML written, at the master-file place of the
    records they concern (or the file's first line when none can be told)."""
    source, problems = read_zone_text(text, "<import>", origin, default_serial=1)
    if source is not None:
        _, more = build_zone(source)
        problems = problems + more
    lines = _positions(text, origin)
    mapped = []
    for problem in problems:
        at = [entry for entry in lines if entry[0] <= problem.where.line]
        key = (at[-1][1], at[-1][2]) if at else None
        where = where_of.get(key) if key else None
        if where is None and key is not None:
            where = next((w for (owner, _), w in where_of.items() if owner == key[0]), None)
        mapped.append(Problem(where or Where(path, 1, 1), problem.message, problem.warning))
    return mapped


def import_master(text: str, origin_text: str, path: str = "<stdin>", base: Path = Path(".")) -> Imported:
    """Master-file text (``$INCLUDE`` paths from ``base``) → the YAML zone format, with
    every problem found by the reader and by ``check`` at its master-file position."""
    try:
        origin = dns.name.from_text(origin_text)
    except dns.exception.DNSException as error:
        return Imported(None, [Problem(Where(path, 1, 1), f"--origin {origin_text!r}: {error}")])
    master = read_master(text, origin, path, base)
    if master.failed:
        return Imported(None, master.problems)
    rrsets = group(master)
    if not any(r.owner == origin and r.rtype == dns.rdatatype.SOA for r in rrsets):
        master.problems.append(Problem(Where(path, 1, 1), f"no SOA record at the origin {origin}: is --origin right?"))
        return Imported(None, master.problems)
    document = _document(rrsets, origin)
    header = f"# {origin.to_text()} imported from {path} by authdns import\n"
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    where_of = {(names.from_text(r.owner.to_text()), r.rtype): r.where for r in rrsets}
    problems = master.problems + _check(header + body, names.from_text(origin.to_text()), where_of, path)
    if any(not problem.warning for problem in problems):
        return Imported(None, problems)
    return Imported(header + body, problems)
