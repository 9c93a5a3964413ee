"""Slow-path query parsing: packet bytes → ``Query``, ``Reject(rcode)`` or None (drop).

dnslib decodes the message; this module applies the rules for what an authoritative
server accepts (RFC 1035 §4.1, RFC 6891 for EDNS(0), RFC 9619 for QDCOUNT, RFC 7871 for
the Client Subnet option, read by ``answering/ecs.py``). It decides nothing about answers.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace

from dnslib import QTYPE, DNSError, DNSQuestion, DNSRecord
from dnslib.buffer import BufferError as DNSBufferError
from dnslib.label import DNSLabelError

from authdns.answering.ecs import BadSubnet, ClientSubnet, read_subnet
from authdns.base import names
from authdns.base.names import Name
from authdns.base.protocol import (BYTE_QR, EDNS_FLAG_DO, FLAG_CD, FLAG_RD, HEADER_LENGTH, MIN_UDP_PAYLOAD, OPCODE_MASK,
                       OPCODE_QUERY, RCODE_BADVERS, RCODE_FORMERR, RCODE_NOTIMP, TCP_MESSAGE_LIMIT)


class Via(enum.IntEnum):
    UDP = 0
    TCP = 1


@dataclass(frozen=True, slots=True)
class Edns:
    """The query's OPT record (RFC 6891 §6.1.2); ``subnet``: its Client Subnet option
    (RFC 7871), None when absent or when ECS processing is off (``--ecs off``)."""

    payload: int
    version: int
    dnssec_ok: bool
    subnet: ClientSubnet | None = None


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


def _read_opt(record: DNSRecord) -> tuple[Edns | None | int, list[tuple[int, bytes]]]:
    """The OPT record (None when absent, or an rcode when it breaks RFC 6891 §6.1.1) and
    its options as (code, data)."""
    opts = [rr for rr in record.ar if rr.rtype == QTYPE.OPT]
    if not opts:
        return None, []
    if len(opts) > 1:
        return RCODE_FORMERR, []  # "more than one OPT ... MUST be treated as FORMERR"
    opt = opts[0]
    if opt.rname.label:
        return RCODE_FORMERR, []  # the OPT owner must be the root
    options = [(option.code, option.data) for option in opt.rdata] if isinstance(opt.rdata, list) else []
    return Edns(payload=opt.rclass, version=(opt.ttl >> 16) & 0xFF, dnssec_ok=bool(opt.ttl & EDNS_FLAG_DO)), options


def _valid_qname(question: DNSQuestion | None) -> Name | None:
    """The question's name in lowercase wire form, or None when absent or not a valid name."""
    if question is None:
        return None
    try:
        return names.from_dnslabel(question.qname)
    except names.BadName:
        return None


def parse_query(packet: bytes, via: Via, server_udp_max: int, ecs: bool = True) -> Query | Reject | None:
    """Classify one incoming message.

    None: drop (shorter than a header, or a response: RFC 1035 §4.1.1 QR, never answer
    an answer). Reject: FORMERR for a broken body or QDCOUNT≠1 (RFC 9619), NOTIMP for
    opcodes other than QUERY, BADVERS for EDNS version > 0 (RFC 6891 §6.1.3), FORMERR
    for a malformed Client Subnet option when ``ecs`` (RFC 7871 §7.2.1; answered
    without one). ``ecs`` False: the option is ignored (§7.1.3).
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
    edns, options = _read_opt(record)
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
    if ecs and options:  # options are version 0's (RFC 6891 §6.1.3): read after BADVERS
        try:
            subnet = read_subnet(options)
        except BadSubnet:
            return Reject(header, RCODE_FORMERR, question, edns)
        if subnet is not None:
            edns = replace(edns, subnet=subnet)
    limit = TCP_MESSAGE_LIMIT if via is Via.TCP else udp_size_limit(edns, server_udp_max)
    return Query(header, qname, question.qtype, question.qclass, question, edns, via, limit)
