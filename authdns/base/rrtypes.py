"""Every record type: its name and code, and rdata between presentation text and wire form.

dnspython knows the presentation format and wire form of every registered type (and
RFC 3597's ``\\# LEN HEX`` for any type), so this module asks it rather than carrying a
parser per type. Records of the types the answer engine and the balancer look inside
(SOA, NS, A, AAAA, MX, CNAME, TXT, SRV, PTR, CAA) stay dnslib objects, parsed by
``zones/records.py``; every other type is held as ``WireRdata``: its wire form, packed as is.

Names inside such rdata are never compressed (RFC 3597 §4: only the RFC 1035 types may
be; RFC 6672 §2.5 repeats it for DNAME) and keep the case the zone file gave them.
Nothing here reads files or knows about zones.
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dnslib import QTYPE, RD, DNSBuffer, RDMAP

from authdns.base import names
from authdns.base.names import Name

# Types whose rdata the engine reads field by field (targets, preferences, the SOA's
# timers): kept as dnslib objects. Everything else is WireRdata.
NATIVE_TYPES = ("SOA", "NS", "A", "AAAA", "MX", "CNAME", "TXT", "SRV", "PTR", "CAA")
NATIVE_CODES = frozenset(getattr(QTYPE, name) for name in NATIVE_TYPES)

DNAME = 39  # RFC 6672
SPF = 99  # RFC 7208 §14.1: same rdata as TXT (obsolete, still found in zones)

# Signatures and denial of existence belong to a signer: a zone that carried them
# unchanged would serve stale or unverifiable proofs once authdns reorders answers.
SIGNER_TYPES = frozenset({dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3,
                          dns.rdatatype.NSEC3PARAM, dns.rdatatype.SIG, dns.rdatatype.NXT})
# Only in messages, never in a zone: RFC 6895 §3.1 meta-types and query types, and the
# obsolete MD/MF (RFC 973: replaced by MX) and the transaction types.
NOT_ZONE_DATA = frozenset({dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY, dns.rdatatype.IXFR,
                           dns.rdatatype.AXFR, dns.rdatatype.MAILA, dns.rdatatype.MAILB, dns.rdatatype.ANY,
                           dns.rdatatype.MD, dns.rdatatype.MF, 0})


class RdataError(ValueError):
    """Rdata text or a type name that cannot be read; the message says why."""


def type_code(text: str) -> int:
    """The code of a type named by its mnemonic (any case) or ``TYPEnnn`` (RFC 3597 §5).
    Raises ``RdataError`` for names that are not types or cannot be zone data."""
    try:
        code = dns.rdatatype.from_text(text.strip())
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise RdataError(f"unknown record type {text.strip()!r} (a type name such as TLSA, or TYPE65280)") from None
    if code in NOT_ZONE_DATA:
        raise RdataError(f"{type_name(code)} is not a record type a zone holds")
    if code in SIGNER_TYPES:
        raise RdataError(f"{type_name(code)} records are made by a DNSSEC signer; authdns does not sign zones "
                         "yet and does not serve signatures copied into a zone file")
    return code


def type_name(code: int) -> str:
    """The mnemonic of a type code, ``TYPEnnn`` when it has none (RFC 3597 §5)."""
    return dns.rdatatype.to_text(code)


def _dns_name(name: Name) -> dns.name.Name:
    return dns.name.from_wire(name, 0)[0]


def wire_from_text(rtype: int, text: str, origin: Name) -> bytes:
    """The wire form of one rdata in presentation format, names relative to ``origin``
    unless absolute. Raises ``RdataError`` with dnspython's reason."""
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, text, origin=_dns_name(origin), relativize=False)
    except dns.exception.DNSException as error:
        raise RdataError(_reason(error, rtype)) from None
    except (ValueError, TypeError, KeyError, IndexError) as error:  # some rdata parsers raise these
        raise RdataError(f"{type_name(rtype)}: {error}") from None
    return rdata.to_wire()


def _reason(error: Exception, rtype: int) -> str:
    message = str(error) or type(error).__name__
    return message if type_name(rtype) in message else f"{type_name(rtype)}: {message}"


def text_from_wire(rtype: int, wire: bytes, origin: Name | None = None) -> str:
    """Presentation text of one rdata; names relative to ``origin`` when given, else absolute."""
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, rtype, wire, 0, len(wire))
    if origin is None:
        return rdata.to_text()
    return rdata.to_text(origin=_dns_name(origin), relativize=True)


def canonical_wire(rtype: int, wire: bytes) -> bytes:
    """The canonical form of one rdata (RFC 4034 §6.2: names in the listed types
    lowercased), so that two records differing only in case compare equal."""
    return dns.rdata.from_wire(dns.rdataclass.IN, rtype, wire, 0, len(wire)).to_digestable()


class WireRdata(RD):
    """Rdata of a type the engine does not look inside: its wire form, packed as is.
    ``repr``/``str`` give the presentation text (status, explain, export)."""

    attrs = ("rtype", "data")

    def __init__(self, rtype: int, data: bytes) -> None:
        super().__init__(data)
        self.rtype = rtype

    def __repr__(self) -> str:
        return text_from_wire(self.rtype, self.data)


def rdata_from_wire(rtype: int, wire: bytes) -> RD:
    """The form the zone model keeps for this type: dnslib's object for the native types
    (an RFC 3597 ``\\#`` record of a native type becomes one), else ``WireRdata``."""
    if rtype in NATIVE_CODES:
        buffer = DNSBuffer(wire)
        return RDMAP[QTYPE[rtype]].parse(buffer, len(wire))
    return WireRdata(rtype, wire)


def rdata_from_text(rtype: int, text: str, origin: Name) -> RD:
    """One rdata of any type from presentation text (``rdata_from_wire`` decides its form)."""
    return rdata_from_wire(rtype, wire_from_text(rtype, text, origin))


def dname_target(rdata: WireRdata) -> Name:
    """The target of a DNAME (RFC 6672 §2.1), lowercase wire form for lookups."""
    target, _ = dns.name.from_wire(rdata.data, 0)
    return names.from_labels(list(target.labels[:-1])) if len(target.labels) > 1 else names.ROOT
