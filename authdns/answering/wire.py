"""Fast-path byte helpers: read a plain query's question straight from the packet, and
splice a precompiled response under the query's own ID, flags and question; and
``is_transfer_query``, the few byte reads that tell a zone transfer over TCP apart.

Only the common case is handled here (ARCHITECTURE.md, "Fast-path key"): QR=0,
OPCODE=QUERY, QDCOUNT=1, ANCOUNT=NSCOUNT=0, and either no additional record or one bare
OPT (root owner, EDNS version 0, no extended rcode, no options; RFC 6891 §6.1.2). The
qname has no compression pointers. Anything else returns None and takes the slow path,
which stays the reference. No dnslib, no logging, no exceptions on the hot path.
"""

from __future__ import annotations

from authdns.base.protocol import EDNS_FLAG_DO, FLAG_CD, FLAG_RD, HEADER_LENGTH, MIN_UDP_PAYLOAD, TRANSFER_TYPES, TYPE_OPT

# The protocol's numbers as the octets the hot path compares.
OPT_TYPE = TYPE_OPT.to_bytes(2, "big")
RD_CD = FLAG_RD | FLAG_CD  # the query bits a response copies (RFC 1035 §4.1.1, RFC 4035 §3.1.6)
DO_OCTET = EDNS_FLAG_DO >> 8  # the DO bit in the first octet of the OPT's flags (its TTL's third octet)
# Types whose answer depends on who asks (transfers: access lists, TSIG): never cached.
PEER_DEPENDENT = tuple(qtype.to_bytes(2, "big") for qtype in TRANSFER_TYPES)
TCP_TAG = b"T"


def question_key(packet: bytes, tcp: int, server_udp_max: int) -> tuple[bytes, int] | None:
    """(cache key, end of the question) for a plain query, else None.

    ``tcp`` is true for TCP (``Via.TCP`` is 1). The key is the lowercased qname, the
    type and class octets, and the size class: TCP, or the UDP limit (512 without EDNS, else min(max(payload, 512), ours)) with DO.
    """
    size = len(packet)
    if size < 17 or packet[2] & 0xF8 or packet[4:11] != b"\x00\x01\x00\x00\x00\x00\x00":
        return None  # QR or an opcode set, or not exactly one question and no answers
    additional = packet[11]
    offset = HEADER_LENGTH
    length = packet[offset]
    while length:
        if length > 63:
            return None  # a pointer or a reserved label type: the slow path judges
        offset += length + 1
        if offset >= size:
            return None
        length = packet[offset]
    end = offset + 5
    if end > size:
        return None
    qtype_qclass = packet[offset + 1:end]
    if qtype_qclass[:2] in PEER_DEPENDENT:
        return None
    if additional == 0:
        if end != size:
            return None
        tag = TCP_TAG if tcp else b"\x02\x00"
    elif additional == 1 and size == end + 11 and packet[end] == 0 and packet[end + 1:end + 3] == OPT_TYPE:
        # root owner, OPT; class = payload; TTL = ext-rcode, version, DO|Z; RDLENGTH 0
        if packet[end + 5] or packet[end + 6] or packet[end + 8] or packet[end + 9:end + 11] != b"\x00\x00":
            return None
        flags = packet[end + 7]
        if flags & 0x7F:
            return None  # Z bits beside DO: must be ignored, but keep such rare queries slow
        do = flags == DO_OCTET
        if tcp:
            tag = TCP_TAG + (b"D" if do else b"E")
        else:
            payload = max((packet[end + 3] << 8) | packet[end + 4], MIN_UDP_PAYLOAD)
            limit = min(payload, server_udp_max)
            tag = bytes(((limit >> 8) | (0x80 if do else 0), limit & 0xFF, 1))
    else:
        return None
    return packet[HEADER_LENGTH:offset + 1].lower() + qtype_qclass + tag, end


def splice(packet: bytes, question_end: int, flags: int, counts: bytes, body: bytes) -> bytes:
    """The response: the query's ID, the variant's flags with RD and CD copied from the
    query, the variant's counts, the query's question bytes as sent (0x20 case kept,
    RFC 1035 §7.3), and the precompiled rest. Compression offsets in ``body`` point into
    the question, whose length is the same for every query of one key."""
    flags |= ((packet[2] << 8) | packet[3]) & RD_CD
    return packet[:2] + bytes((flags >> 8, flags & 0xFF)) + counts + packet[HEADER_LENGTH:question_end] + body


def is_transfer_query(packet: bytes) -> bool:
    """QR=0, OPCODE=QUERY, QDCOUNT=1 and QTYPE AXFR or IXFR, read without a parse, so that
    ordinary TCP queries pay a few byte reads only."""
    if len(packet) < 17 or packet[2] & 0xF8 or packet[4:6] != b"\x00\x01":  # QR or an opcode set
        return False
    offset = HEADER_LENGTH
    try:
        while (length := packet[offset]) != 0:
            if length & 0xC0:
                return True  # a pointer in a question is odd; let the full parse decide
            offset += length + 1
        return int.from_bytes(packet[offset + 1 : offset + 3], "big") in TRANSFER_TYPES
    except IndexError:
        return False
