"""RFC 1035 master files ↔ authdns zones: ``authdns import`` and ``authdns export``.

Import parses with dnspython's zone reader (it handles $ORIGIN, $TTL, $INCLUDE, relative
names, parentheses, comments, TTL units and the "IN 300" field order, which dnslib's
parser does not) and writes the YAML format. Export writes one absolute-named record per
line from a loaded ``Zone``, which NSD, Knot and BIND read as is. Serves nothing.
"""

from __future__ import annotations

from collections import Counter

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import yaml
from dnslib import QTYPE

from . import names
from .zone import Zone
from .rrtypes import NATIVE_TYPES as SUPPORTED_TYPES, WireRdata, type_name


class ImportError_(Exception):
    """The master file cannot become a YAML zone; the message is ``file:line: why``."""


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


def _record_value(rdata, origin: dns.name.Name):
    """The short (or, where text could be ambiguous, mapping) form of one record."""
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
    if rtype == "TXT":
        parts = [part.decode("utf-8") for part in rdata.strings]
        return parts[0] if len(parts) == 1 else parts
    if rtype == "CAA":
        return {"flags": rdata.flags, "tag": rdata.tag.decode("ascii"), "value": rdata.value.decode("utf-8")}
    if rtype == "SOA":
        return {
            "mname": rel(rdata.mname), "rname": rel(rdata.rname), "serial": rdata.serial,
            "refresh": rdata.refresh, "retry": rdata.retry, "expire": rdata.expire, "minimum": rdata.minimum,
        }
    raise ValueError(rtype)


def _rrset_value(rtype: str, values: list, ttl: int, default_ttl: int):
    if rtype == "TXT":
        # A list at the RRset level means several records; a record of several strings
        # is itself a list, so a lone multi-string record needs the outer list too.
        body = values if len(values) > 1 or isinstance(values[0], list) else values[0]
    else:
        body = values if len(values) > 1 else values[0]
    if ttl != default_ttl:
        return {"ttl": ttl, "records": body if isinstance(body, list) else [body]}
    return body


def _parse(text: str, origin: dns.name.Name, path: str) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False, filename=path)


def _locate_error(text: str, origin: dns.name.Name, path: str, error: Exception) -> str:
    """``file:line: message`` naming the line really at fault.

    dnspython counts a line late when it notices the error after the newline, and says
    only "Text input is malformed". The first prefix of the file that fails for a reason
    other than being cut short (open parentheses) ends at the faulty line.
    """
    lines = text.splitlines(keepends=True)
    low, high = 1, len(lines)
    message = str(error).split(": ", 1)[-1]
    while low < high:  # bisect for the shortest failing prefix
        middle = (low + high) // 2
        try:
            _parse("".join(lines[:middle]), origin, path)
            low = middle + 1
        except dns.exception.DNSException as prefix_error:
            if "unbalanced parentheses" in str(prefix_error) or isinstance(prefix_error, dns.exception.UnexpectedEnd):
                low = middle + 1
            else:
                high = middle
    if not lines:
        return f"{path}: {message}"
    return f"{path}:{low}: {message.rstrip('.')}: {lines[low - 1].strip()}"


def import_master(text: str, origin_text: str, path: str = "<stdin>") -> str:
    """Convert master-file text to the YAML zone format (returned as text)."""
    try:
        origin = dns.name.from_text(origin_text)
    except dns.exception.DNSException as error:
        raise ImportError_(f"--origin {origin_text!r}: {error}") from None
    try:
        zone = _parse(text, origin, path)
    except dns.exception.DNSException as error:
        raise ImportError_(_locate_error(text, origin, path, error)) from None
    ttls: Counter = Counter()
    records: dict[str, dict] = {}
    for owner, node in sorted(zone.nodes.items(), key=lambda item: (item[0] != origin, item[0])):
        owner_text = _relative(owner, origin)
        for rdataset in node.rdatasets:
            rtype = dns.rdatatype.to_text(rdataset.rdtype)
            if rdataset.rdclass != dns.rdataclass.IN:
                raise ImportError_(f"{path}: {owner} {rtype}: only class IN is served")
            if rtype not in SUPPORTED_TYPES:
                raise ImportError_(
                    f"{path}: {owner} has a {rtype} record; authdns serves {', '.join(SUPPORTED_TYPES)}"
                )
            ttls[rdataset.ttl] += 1
    default_ttl = ttls.most_common(1)[0][0] if ttls else 3600
    for owner, node in sorted(zone.nodes.items(), key=lambda item: (item[0] != origin, item[0])):
        owner_text = _relative(owner, origin)
        types: dict = {}
        order = sorted(node.rdatasets, key=lambda r: (r.rdtype != dns.rdatatype.SOA, r.rdtype))
        for rdataset in order:
            rtype = dns.rdatatype.to_text(rdataset.rdtype)
            try:
                values = [_record_value(rdata, origin) for rdata in rdataset]
            except UnicodeDecodeError:
                raise ImportError_(f"{path}: {owner} {rtype}: text that is not UTF-8 cannot be written as YAML") from None
            types[rtype] = _rrset_value(rtype, values, rdataset.ttl, default_ttl)
        if types:
            records[owner_text] = types
    header = f"# {origin.to_text()} imported from {path} by authdns import\n"
    document = {"ttl": default_ttl, "records": records}
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
