"""``Answer`` → wire bytes: header flags, the question as asked, sections packed RRset by
RRset within the client's size limit, and the OPT record. Looks nothing up.

Truncation (RFC 2181 §9, RFC 9471): RRsets are packed whole. When an answer or
authority RRset — or the in-domain glue of a referral — does not fit, TC is set and
packing stops there, so the client retries over TCP and gets all of it; an optional
additional RRset that does not fit is left out without TC. The question is always
kept (dnslib's own truncate() drops it).
"""

from __future__ import annotations

import struct

from dnslib import QTYPE, RR, DNSBuffer, DNSLabel, EDNSOption
from dnslib.label import DNSLabelError

from authdns.answering.answer import Answer, Placed
from authdns.base.protocol import (EDNS_FLAG_DO, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, FLAG_TC, HEADER_LENGTH, OPCODE_MASK,
                       OPTION_ECS, OPTION_EDE, RCODE_SERVFAIL)
from authdns.answering.query import Edns, Header, Query, Reject

OPT_RECORD_LENGTH = 11  # root owner, type, class, TTL, RDLENGTH 0 (RFC 6891 §6.1.2)
EDE_OPTION_LENGTH = 6  # code, length, INFO-CODE; we send no EXTRA-TEXT


class CaseInsensitiveBuffer(DNSBuffer):
    """dnslib's buffer keys name compression by exact case; names are case-insensitive
    (RFC 1035 §2.3.3), so this one keys by lowercase and answers compress against the
    question as NSD's do, which also carries the query's 0x20 case into the owner names."""

    def encode_name(self, name: DNSLabel | str) -> None:
        if not isinstance(name, DNSLabel):
            name = DNSLabel(name)
        labels = list(name.label)
        if sum(len(label) + 1 for label in labels) + 1 > 255:
            raise DNSLabelError(f"name too long: {name}")
        while labels:
            key = tuple(label.lower() for label in labels)
            pointer = self.names.get(key)
            if pointer is not None:
                self.pack("!H", 0xC000 | pointer)
                return
            if self.offset < 0x4000:  # a pointer has 14 bits of offset
                self.names[key] = self.offset
            element = labels.pop(0)
            if len(element) > 63:
                raise DNSLabelError(f"label too long: {element!r}")
            self.pack("!B", len(element))
            self.append(element)
        self.append(b"\x00")

    def rewind(self, offset: int) -> None:
        """Drop everything from ``offset`` on, compression targets included."""
        del self.data[offset:]
        self.offset = offset
        self.names = {key: value for key, value in self.names.items() if value < offset}


def _flags(header: Header, rcode: int, authoritative: bool, truncated: bool) -> int:
    """QR set, opcode, RD and CD copied, RA never (we do not recurse), AA as decided."""
    flags = FLAG_QR | (header.opcode << 11) | (rcode & 0xF)
    if authoritative:
        flags |= FLAG_AA
    if truncated:
        flags |= FLAG_TC
    if header.recursion_desired:
        flags |= FLAG_RD
    if header.checking_disabled:
        flags |= FLAG_CD
    return flags


def _opt_record(edns: Edns, server_udp_max: int, rcode: int, ede: int | None = None, scope: int = 0) -> RR:
    """Our OPT: our payload size, version 0, the extended rcode bits, DO echoed (RFC 3225 §3),
    the query's Client Subnet echoed with SCOPE PREFIX-LENGTH ``scope`` (RFC 7871 §7.2.1;
    ``answering/ecs.py``), and an Extended DNS Error option when there is one to give
    (RFC 8914 §2)."""
    ttl = ((rcode >> 4) << 24) | (EDNS_FLAG_DO if edns.dnssec_ok else 0)
    options = [] if edns.subnet is None else [EDNSOption(OPTION_ECS, edns.subnet.option(scope))]
    if ede is not None:
        options.append(EDNSOption(OPTION_EDE, struct.pack("!H", ede)))
    return RR(DNSLabel([]), QTYPE.OPT, server_udp_max, ttl, options)


def _opt_length(edns: Edns, ede: int | None) -> int:
    return (OPT_RECORD_LENGTH + (0 if ede is None else EDE_OPTION_LENGTH)
            + (0 if edns.subnet is None else edns.subnet.wire_length()))


def _pack_rrset(buffer: CaseInsensitiveBuffer, placed: Placed, limit: int) -> bool:
    """Append one whole RRset; on overflow rewind and return False."""
    start = buffer.offset
    for rr in placed.records():
        rr.pack(buffer)
    if buffer.offset > limit:
        buffer.rewind(start)
        return False
    return True


def render(query: Query, answer: Answer, server_udp_max: int, scope: int = 0) -> bytes:
    """The response; ``scope``: the Client Subnet SCOPE PREFIX-LENGTH, when the query
    sent one (the responder decides it: engine/responder.py)."""
    buffer = CaseInsensitiveBuffer()
    buffer.append(b"\x00" * 12)
    query.question.pack(buffer)
    limit = query.size_limit - (_opt_length(query.edns, answer.ede) if query.edns is not None else 0)
    counts = [0, 0, 0]
    truncated = False
    for index, section in enumerate((answer.answer, answer.authority, answer.additional)):
        for placed in section:
            if _pack_rrset(buffer, placed, limit):
                counts[index] += len(placed.rrset)
            elif index < 2 or placed.required:
                truncated = True
                break
        if truncated:
            break
    if query.edns is not None:
        _opt_record(query.edns, server_udp_max, answer.rcode, answer.ede, scope).pack(buffer)
        counts[2] += 1
    flags = _flags(query.header, answer.rcode, answer.authoritative, truncated)
    struct.pack_into("!HHHHHH", buffer.data, 0, query.header.id, flags, 1, counts[0], counts[1], counts[2])
    return bytes(buffer.data)


def render_reject(reject: Reject, server_udp_max: int) -> bytes:
    """An error response: the header, the question when there was one readable, and an
    OPT when the query had one (RFC 6891 §7: BADVERS carries its rcode there)."""
    buffer = CaseInsensitiveBuffer()
    buffer.append(b"\x00" * 12)
    qdcount = 0
    if reject.question is not None:
        reject.question.pack(buffer)
        qdcount = 1
    arcount = 0
    if reject.edns is not None:
        _opt_record(reject.edns, server_udp_max, reject.rcode, reject.ede).pack(buffer)
        arcount = 1
    flags = _flags(reject.header, reject.rcode, False, False)
    struct.pack_into("!HHHHHH", buffer.data, 0, reject.header.id, flags, qdcount, 0, 0, arcount)
    return bytes(buffer.data)


def render_servfail(packet: bytes) -> bytes | None:
    """Last resort after an internal error: SERVFAIL with the header's ID, nothing else."""
    if len(packet) < HEADER_LENGTH:
        return None
    ident, flags = struct.unpack_from("!HH", packet)
    flags = FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | RCODE_SERVFAIL
    return struct.pack("!HHHHHH", ident, flags, 0, 0, 0, 0)


