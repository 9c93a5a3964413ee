"""TSIG (RFC 8945) for every message the server answers: the algorithms offered, a
signed request checked, and the replies signed.

``check_request(packet, keys, payload)`` looks for a TSIG record at the end of the
additional section and returns None (the message is not signed), the error reply to
send (FORMERR, or NOTAUTH with BADKEY, BADSIG, BADTIME or BADTRUNC: §5.2), or a
``Signed`` request: the dnspython message and the ``Signer`` that signs what answers it
(§5.3), single messages and the chained messages of a transfer (§5.3.1) alike. The
query path (engine/responder.py) and transfers (transfer/zonetransfer.py) both go through here; MACs are
computed by dnspython's ``dns.tsig``. The responder asks only for messages the fast
path (answering/wire.py) did not take, and of those only ones with records beyond the question:
a message with none cannot be signed.
"""

from __future__ import annotations

import hmac
import struct
import time
from dataclasses import dataclass
from typing import Mapping

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

from authdns.base.protocol import BYTE_QR, FLAG_QR, FLAG_RD, HEADER_LENGTH, OPCODE_MASK, RCODE_FORMERR, TYPE_TSIG

# The fudge our signed replies carry, and the most clock skew a request may show: a
# request's time must be within min(its own fudge, this) of our clock (RFC 8945 §5.2.3;
# §10 recommends 300 s). dnspython alone would honour any fudge the requester chose.
FUDGE = 300


@dataclass(frozen=True, slots=True)
class Algorithm:
    """A MAC algorithm offered: its name on the wire and its output length in octets."""

    name: dns.name.Name
    digest_size: int

    @property
    def min_mac_size(self) -> int:
        """RFC 8945 §5.2.2.1: a MAC shorter than max(10, half the output) is malformed."""
        return max(10, self.digest_size // 2)


# RFC 8945 §6: hmac-sha1 and hmac-sha256 are mandatory to implement, hmac-sha224,
# hmac-sha384 and hmac-sha512 optional. Names as dig's -y and BIND's key files spell them.
ALGORITHMS: Mapping[str, Algorithm] = {
    "hmac-sha1": Algorithm(dns.tsig.HMAC_SHA1, 20),
    "hmac-sha224": Algorithm(dns.tsig.HMAC_SHA224, 28),
    "hmac-sha256": Algorithm(dns.tsig.HMAC_SHA256, 32),
    "hmac-sha384": Algorithm(dns.tsig.HMAC_SHA384, 48),
    "hmac-sha512": Algorithm(dns.tsig.HMAC_SHA512, 64),
}
DEFAULT_ALGORITHM = "hmac-sha256"
# Refused by name, with the reason (RFC 8945 §6: HMAC-MD5 "MUST NOT" be used).
REFUSED_ALGORITHMS: Mapping[str, str] = {
    "hmac-md5": "hmac-md5 must not be used (RFC 8945 §6); make a new key with hmac-sha256",
    "hmac-md5.sig-alg.reg.int": "hmac-md5 must not be used (RFC 8945 §6); make a new key with hmac-sha256",
}
_BY_WIRE_NAME = {algorithm.name: algorithm for algorithm in ALGORITHMS.values()}


@dataclass(frozen=True, slots=True)
class TsigSecret:
    """One configured key's algorithm (a key of ``ALGORITHMS``) and secret."""

    algorithm: str
    secret: bytes


Keyring = Mapping[dns.name.Name, dns.tsig.Key]


def keyring(keys: Mapping[str, TsigSecret]) -> dict[dns.name.Name, dns.tsig.Key]:
    """``ServerConfig.tsig_keys`` (absolute lowercase name → secret) as dnspython keys."""
    return {dns.name.from_text(name): dns.tsig.Key(name, spec.secret, ALGORITHMS[spec.algorithm].name)
            for name, spec in keys.items()}


def digest_size(key: dns.tsig.Key) -> int:
    return _BY_WIRE_NAME[key.algorithm].digest_size


def signature_size(key: dns.tsig.Key, other_length: int = 0) -> int:
    """Octets a TSIG record signed with ``key`` adds to a message (RFC 8945 §4.2: owner,
    type, class, TTL, RDLENGTH, then algorithm, time, fudge, MAC size, MAC, original ID,
    error, other length, other data); owner and algorithm names are never compressed."""
    return (len(key.name.to_wire()) + 10 + len(key.algorithm.to_wire()) + 6 + 2 + 2 + digest_size(key)
            + 2 + 2 + 2 + other_length)


class SignedReply(bytes):
    """A reply signed for a request whose TSIG verified, with the ``signer`` that signed
    it: what changes it afterwards (serve/rrl.py's truncated slip, which keeps only the
    question) signs the result again, so the requester can still verify it (§5.3)."""

    signer: "Signer"

    @staticmethod
    def of(wire: bytes, signer: "Signer") -> "SignedReply":
        reply = SignedReply(wire)
        reply.signer = signer
        return reply


@dataclass(frozen=True, slots=True)
class Signer:
    """What the replies to one verified request are signed with: its key and its MAC
    (the first reply's MAC covers it, RFC 8945 §5.3)."""

    key: dns.tsig.Key
    request_mac: bytes

    @property
    def reserve(self) -> int:
        """Room a reply must leave for its signature."""
        return signature_size(self.key)

    def sign(self, wire: bytes, context: object = None, multi: bool = False, *, error: int = 0,
             other: bytes = b"", time_signed: int | None = None) -> tuple[SignedReply, object]:
        """``wire`` with a TSIG record appended and ARCOUNT raised by one. For the
        messages of a transfer, pass ``multi=True`` and each call's context to the next:
        each MAC then covers the one before (§5.3.1). ``error``, ``other`` and
        ``time_signed`` (default: now) are for the signed error replies (§5.2.3)."""
        ident = struct.unpack_from("!H", wire)[0]
        unsigned = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, self.key.algorithm, 0, FUDGE,
                                             b"", ident, error, other)
        when = int(time.time()) if time_signed is None else time_signed
        tsig, context = dns.tsig.sign(wire, self.key, unsigned, when, self.request_mac, context, multi)
        rdata = tsig.to_wire()
        record = (self.key.name.to_wire() + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata))
                  + rdata)
        additional = struct.unpack_from("!H", wire, 10)[0] + 1
        return SignedReply.of(wire[:10] + struct.pack("!H", additional) + wire[12:] + record, self), context


@dataclass(frozen=True, slots=True)
class Signed:
    """A request whose TSIG verified: the message (``keyring`` set to the key, as
    dnspython's ``make_response`` expects), the signer of its replies, and its bytes
    without the TSIG record (for the ordinary query parser)."""

    message: dns.message.Message
    signer: Signer
    unsigned: bytes


class MalformedMessage(ValueError):
    """The records cannot be walked: the ordinary parse will say FORMERR."""


def _skip_name(packet: bytes, offset: int) -> int:
    while True:
        length = packet[offset]
        if length >= 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += length + 1


def tsig_position(packet: bytes) -> tuple[int | None, int] | None:
    """None when the message holds no TSIG record; else (where the last record starts
    when it is a TSIG in the additional section, else None; how many TSIG records there
    are). Raises ``MalformedMessage`` when its records run past its end."""
    try:
        qdcount, ancount, nscount, arcount = struct.unpack_from("!4H", packet, 4)
        offset = HEADER_LENGTH
        for _ in range(qdcount):
            offset = _skip_name(packet, offset) + 4
        last_tsig, count, additional_from = None, 0, ancount + nscount
        for index in range(ancount + nscount + arcount):
            start = offset
            offset = _skip_name(packet, offset)
            rtype, _, _, length = struct.unpack_from("!HHIH", packet, offset)
            offset += 10 + length
            last_tsig = start if rtype == TYPE_TSIG and index >= additional_from else None
            count += rtype == TYPE_TSIG
        if offset > len(packet):
            raise MalformedMessage("a record runs past the end of the message")
    except (IndexError, struct.error):
        raise MalformedMessage("a record runs past the end of the message") from None
    return (last_tsig, count) if count else None


def formerr(packet: bytes) -> bytes:
    """A bare FORMERR: the request's ID, opcode and RD, no sections (there is nothing in
    it to echo safely, and no TSIG to sign against)."""
    ident, flags = struct.unpack_from("!HH", packet)
    flags = FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | RCODE_FORMERR
    return struct.pack("!6H", ident, flags, 0, 0, 0, 0)


def check_request(packet: bytes, keys: Keyring, payload: int) -> Signed | bytes | None:
    """A request's TSIG checked in RFC 8945 §5.2's order: placement (§5.1), key (§5.2.1),
    MAC size (§5.2.2.1), MAC (§5.2.2), time (§5.2.3), truncation (§5.2.4). None when the
    message carries no TSIG; the error reply to send when a check fails; else the
    verified request. A response (QR set) is never answered (RFC 1035 §4.1.1): None, and
    the caller's parser drops it."""
    if len(packet) < HEADER_LENGTH or packet[2] & BYTE_QR:
        return None
    try:
        found = tsig_position(packet)
    except MalformedMessage:
        return None
    if found is None:
        return None
    offset, count = found
    if offset is None or count > 1:
        return formerr(packet)  # §5.1: not the last record of the additional section, or not the only one
    try:
        message = dns.message.from_wire(packet, keyring=False)
    except Exception:  # anything dnspython cannot read is malformed
        return formerr(packet)
    key = keys.get(message.keyname)
    if key is None or key.algorithm != message.keyalgorithm:
        return error_reply(message, dns.rcode.BADKEY, payload)  # §5.2.1, unsigned
    tsig = message.tsig[0]
    size = _BY_WIRE_NAME[key.algorithm]
    if not size.min_mac_size <= len(tsig.mac) <= size.digest_size or tsig.error != dns.rcode.NOERROR:
        return _format_error_reply(message, payload)  # §5.2.2.1: malformed MAC size; a request with an error
    if not mac_verifies(packet, offset, key, tsig):
        return error_reply(message, dns.rcode.BADSIG, payload)  # §5.2.2, unsigned
    message.keyring = key  # verified: what make_response and the transfer rules look at
    if abs(int(time.time()) - tsig.time_signed) > min(tsig.fudge, FUDGE):
        return error_reply(message, dns.rcode.BADTIME, payload, key)  # §5.2.3, signed, our clock in Other Data
    if len(tsig.mac) < size.digest_size:
        # Local policy accepts no truncated MAC: one that verifies gets BADTRUNC (§5.2.4).
        return error_reply(message, dns.rcode.BADTRUNC, payload, key)
    return Signed(message, Signer(key, tsig.mac), strip(packet, offset))


def mac_verifies(packet: bytes, offset: int, key: dns.tsig.Key, tsig: dns.rdtypes.ANY.TSIG.TSIG) -> bool:
    """The request's MAC against our own (RFC 8945 §4.3.3: the message with its original
    ID, the TSIG record removed, then the TSIG variables), compared over the MAC's own
    length so that a truncated MAC can be told apart from a wrong one."""
    additional = struct.unpack_from("!H", packet, 10)[0] - 1
    wire = struct.pack("!H", tsig.original_id) + packet[2:10] + struct.pack("!H", additional) + packet[12:offset]
    ours, _ = dns.tsig.sign(wire, key, tsig, tsig.time_signed)
    return len(tsig.mac) > 0 and hmac.compare_digest(ours.mac[: len(tsig.mac)], tsig.mac)


def strip(packet: bytes, offset: int) -> bytes:
    """The message without its TSIG record (the last one, at ``offset``): what the
    ordinary query parser reads."""
    additional = struct.unpack_from("!H", packet, 10)[0] - 1
    return packet[:10] + struct.pack("!H", additional) + packet[12:offset]


def error_reply(message: dns.message.Message, error: int, payload: int, key: dns.tsig.Key | None = None) -> bytes:
    """NOTAUTH with the TSIG error (RFC 8945 §5.2). BADKEY and BADSIG go unsigned, with an
    empty MAC (§5.3.2). BADTIME and BADTRUNC follow a verified MAC and are signed, over
    the request's MAC as received (§5.2.2.1); BADTIME's Time Signed is the request's and
    its Other Data our clock (§5.2.3), as BIND and Knot send it. Plain bytes, not a
    ``SignedReply``: a slip of it would be signed again without its TSIG error."""
    request = message.tsig[0]
    response = dns.message.make_response(message, our_payload=payload)
    response.set_rcode(dns.rcode.NOTAUTH)
    now = int(time.time())
    if key is not None:
        response.tsig = None  # make_response asked for a signature; ours is added below
        wire = response.to_wire()
        if error == dns.rcode.BADTIME:
            other, signed_at = struct.pack("!HI", now >> 32, now & 0xFFFFFFFF), request.time_signed
        else:
            other, signed_at = b"", now
        return bytes(Signer(key, request.mac).sign(wire, error=error, other=other, time_signed=signed_at)[0])
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, message.keyalgorithm, now, FUDGE,
                                      b"", message.id, error, b"")
    response.tsig = dns.rrset.from_rdata(message.keyname, 0, rdata)
    return response.to_wire()


def _format_error_reply(message: dns.message.Message, payload: int) -> bytes:
    """FORMERR, unsigned and without a TSIG record: the request's TSIG is malformed
    (RFC 8945 §5.2.2.1), so there is nothing to sign against."""
    response = dns.message.make_response(message, our_payload=payload)
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()
