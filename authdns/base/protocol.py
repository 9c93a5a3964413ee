"""The DNS vocabulary the modules share: the header's layout and flags, opcodes, rcodes,
Extended DNS Error codes, EDNS bits, message limits and the record types that are
protocol rather than data (OPT, TSIG, the transfers). Numbers only, each from the RFC
named beside it; no behaviour, no imports, so any module may use it (the fast path
too). One home: a module that needs one of these takes it from here.
"""

from __future__ import annotations

# RFC 1035 §4.1.1: ID, flags, then QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT, two octets each.
HEADER_LENGTH = 12
MIN_UDP_PAYLOAD = 512  # RFC 1035 §4.2.1; RFC 6891 §6.2.5: smaller EDNS sizes count as 512
TCP_MESSAGE_LIMIT = 65535  # RFC 1035 §4.2.2: the two-octet length prefix

# The flags word (octets 2-3 of the header), RFC 1035 §4.1.1; CD from RFC 4035 §3.1.6.
FLAG_QR = 0x8000
OPCODE_MASK = 0x7800  # the four opcode bits; ``(flags & OPCODE_MASK) >> 11`` is the opcode
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_CD = 0x0010
# The same flags as bits of the first flags octet (``packet[2]``), for byte-level tests.
BYTE_QR = FLAG_QR >> 8
BYTE_TC = FLAG_TC >> 8

OPCODE_QUERY = 0
OPCODE_NOTIFY = 4  # RFC 1996

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
RCODE_YXDOMAIN = 6  # RFC 6672 §2.2: a DNAME substitution longer than 255 octets
RCODE_BADVERS = 16  # RFC 6891 §9: extended rcode 1 in the OPT, 0 in the header

# EDNS(0) (RFC 6891): the OPT record's TTL holds the DO bit (RFC 3225 §3).
EDNS_FLAG_DO = 0x8000
OPTION_EDE = 15  # the Extended DNS Error option code (RFC 8914 §2)
OPTION_ECS = 8  # EDNS Client Subnet (RFC 7871 §6)

# Extended DNS Errors (RFC 8914 §4), sent in the OPT record of a query that had one.
EDE_PROHIBITED = 18  # §4.19: the server is unable to respond due to policy
EDE_NOT_AUTHORITATIVE = 20  # §4.21: REFUSED for a name outside our zones
EDE_NOT_SUPPORTED = 21  # §4.22: the requested operation or query is not supported

# Record types that are protocol, not zone data.
TYPE_OPT = 41  # RFC 6891 §6.1.1
TYPE_TSIG = 250  # RFC 8945 §4.2
TYPE_IXFR = 251  # RFC 1995
TYPE_AXFR = 252  # RFC 5936
TRANSFER_TYPES = (TYPE_AXFR, TYPE_IXFR)
