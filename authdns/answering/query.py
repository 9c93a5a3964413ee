"""Slow-path query parsing: packet bytes → ``Query``, ``Reject(rcode)`` or None (drop).

dnslib decodes the message; this module applies the rules for what an authoritative
server accepts (RFC 1035 §4.1, RFC 6891 for EDNS(0), RFC 9619 for QDCOUNT). It decides
nothing about answers.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from dnslib import QTYPE, DNSError, DNSQuestion, DNSRecord
from dnslib.buffer import BufferError as DNSBufferError
from dnslib.label import DNSLabelError

from authdns.base import names
from authdns.base.names import Name
from authdns.base.protocol import (BYTE_QR, EDNS_FLAG_DO, FLAG_CD, FLAG_RD, HEADER_LENGTH, MIN_UDP_PAYLOAD, OPCODE_MASK,
                       OPCODE_QUERY, RCODE_BADVERS, RCODE_FORMERR, RCODE_NOTIMP, TCP_MESSAGE_LIMIT)


class Via(enum.IntEnum):
    UDP = 0
    TCP = 1


@dataclass(frozen=True, slots=True)
class Edns:
    """The query's OPT record (RFC 6891 §6.1.2)."""

    payload: int
    version: int
    dnssec_ok: bool


@dataclass(frozen=True, slots=True)
class Header:
    """What every response copies from the query (RFC 1035 §4.1.1)."""

    id: int
    opcode: int
    recursion_desired: bool
    checking_disabled: bool  # copied back (RFC 4035 §3.1.6); NSD 4.6 clears it, Knot copies it


@dataclass(frozen=True, slots=True)
class Query:
    header: Header
    qname: Name  # lowercase wire form, for lookups
    qtype: int
    qclass: int
    question: DNSQuestion  # as asked, case included (echoed for 0x20, RFC 1035 §7.3)
    edns: Edns | None
    via: Via
    size_limit: int  # the largest response this client takes


@dataclass(frozen=True, slots=True)
class Reject:
    """A query answered with an error rcode and no data; ``ede`` is an Extended DNS Error
    info-code (RFC 8914) for the OPT record, when the query had one."""

    header: Header
    rcode: int
    question: DNSQuestion | None
    edns: Edns | None
    ede: int | None = None


def read_header(packet: bytes) -> Header:
    ident, flags = struct.unpack_from("!HH", packet)
    return Header(ident, (flags & OPCODE_MASK) >> 11, bool(flags & FLAG_RD), bool(flags & FLAG_CD))


def is_response(packet: bytes) -> bool:
    return bool(packet[2] & BYTE_QR)


def udp_size_limit(edns: Edns | None, server_max: int) -> int:
    """min(client's payload, ours), never below 512 (RFC 6891 §6.2.3, §6.2.5)."""
    if edns is None:
        return MIN_UDP_PAYLOAD
    return max(MIN_UDP_PAYLOAD, min(edns.payload, server_max))


def _read_edns(record: DNSRecord) -> Edns | None | int:
    """The OPT record, None when absent, or an rcode when it breaks RFC 6891 §6.1.1."""
    opts = [rr for rr in record.ar if rr.rtype == QTYPE.OPT]
    if not opts:
        return None
    if len(opts) > 1:
        return RCODE_FORMERR  # "more than one OPT ... MUST be treated as FORMERR"
    opt = opts[0]
    if opt.rname.label:
        return RCODE_FORMERR  # the OPT owner must be the root
    return Edns(payload=opt.rclass, version=(opt.ttl >> 16) & 0xFF, dnssec_ok=bool(opt.ttl & EDNS_FLAG_DO))


def _valid_qname(question: DNSQuestion | None) -> Name | None:
    """The question's name in lowercase wire form, or None when absent or not a valid name."""
    if question is None:
        return None
    try:
        return names.from_dnslabel(question.qname)
    except names.BadName:
        return None


def parse_query(packet: bytes, via: Via, server_udp_max: int) -> Query | Reject | None:
    """Classify one incoming message.

    None: drop (shorter than a header, or a response: RFC 1035 §4.1.1 QR, never answer
    an answer). Reject: FORMERR for a broken body or QDCOUNT≠1 (RFC 9619), NOTIMP for
    opcodes other than QUERY, BADVERS for EDNS version > 0 (RFC 6891 §6.1.3).
    """
    if len(packet) < HEADER_LENGTH or is_response(packet):
        return None
    header = read_header(packet)
    try:
        record = DNSRecord.parse(packet)
    except (DNSError, DNSBufferError, DNSLabelError, struct.error, ValueError, UnicodeDecodeError, IndexError):
        # Another opcode's body (an UPDATE's prerequisites, say) need not parse as a
        # query's: the opcode alone decides NOTIMP, as NSD answers it.
        rcode = RCODE_NOTIMP if header.opcode != OPCODE_QUERY else RCODE_FORMERR
        return Reject(header, rcode, None, None)
    question = record.questions[0] if len(record.questions) == 1 else None
    edns = _read_edns(record)
    qname = _valid_qname(question)
    # A name dnslib reads but RFC 1035 §2.3.4 forbids (a label over 63 octets, a name over
    # 255) cannot be written back: such a question is left out of the reply.
    echoed = question if qname is not None else None
    if isinstance(edns, int):
        return Reject(header, edns, echoed, None)
    if header.opcode != OPCODE_QUERY:
        return Reject(header, RCODE_NOTIMP, echoed, edns)
    if qname is None or question is None:  # no question, several, or a forbidden name
        return Reject(header, RCODE_FORMERR, None, edns)
    if edns is not None and edns.version > 0:
        return Reject(header, RCODE_BADVERS, question, edns)
    limit = TCP_MESSAGE_LIMIT if via is Via.TCP else udp_size_limit(edns, server_udp_max)
    return Query(header, qname, question.qtype, question.qclass, question, edns, via, limit)
