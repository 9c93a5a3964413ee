"""Zone transfer messages as wire bytes (RFC 5936 §2.2, RFC 1995 §4): a zone version's
records packed once into the answer sections of as many messages as needed
(``render_zone``: zone order, owner names compressed within each message, rdata names
not), an IXFR's differences (``render_incremental``), the SOA alone (``soa_chunk``),
and ``assemble``, which puts each chunk under a header and signs every message when
the request was signed (each MAC chained to the one before, RFC 8945 §5.3.1). Pure
but for short sleeps that let the event loop take the GIL: it runs in transfer worker
threads.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import dns.flags
import dns.message
import dns.rdatatype
from dnslib import CLASS, QTYPE, DNSBuffer, DNSLabel

from authdns.base import names
from authdns.base.names import Name
from authdns.base.protocol import FLAG_AA, FLAG_QR, FLAG_RD, FLAG_TC, HEADER_LENGTH, TCP_MESSAGE_LIMIT
from authdns.base.tsig import Signer
from authdns.zones.zone import Records, RRset, Zone, ZoneDelta

# Room kept free in every message for the OPT and TSIG records (a TSIG with a 255-octet
# key name and a SHA-512 MAC is under 370 octets: tsig.signature_size; an OPT without
# options 11).
TRAILER_RESERVE = 512
# Packing runs in a worker thread and gives the GIL away every YIELD_EVERY records
# (a fraction of a millisecond of work) by sleeping YIELD_PAUSE: a real sleep, so that
# the event loop, when it waits for the GIL, gets it at once instead of after the
# interpreter's 5 ms switch interval. Costs roughly a tenth of the packing time.
YIELD_EVERY = 64
YIELD_PAUSE = 0.00005


class _PlainBuffer(DNSBuffer):
    """dnslib's buffer without name compression: rdata packed alone must not point at
    offsets of its own scratch buffer (an SOA's RNAME would, against its MNAME)."""

    def encode_name(self, name: DNSLabel | str) -> None:
        self.encode_name_nocompress(name)


def rdata_wire(rtype: int, rdata) -> bytes:
    """One dnslib rdata's wire form, names uncompressed."""
    if rtype in (QTYPE.A, QTYPE.AAAA):
        return bytes(rdata.data)  # the address octets (dnslib keeps them as a tuple)
    buffer = _PlainBuffer()
    rdata.pack(buffer)
    return bytes(buffer.data)


class RecordTooLarge(ValueError):
    """A record that does not fit in a message at all (not possible from a zone file)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """The answer section of one message: ``count`` records, packed."""

    records: bytes
    count: int


@dataclass(frozen=True, slots=True)
class RenderedZone:
    """A zone version as its AXFR sends it: SOA, every other record (glue and data below
    cuts included, in zone-file order: RFC 5936 §3.2, §3.5), SOA again (§2.2),
    split into answer sections that fit a TCP message with the question (first only),
    the OPT and a TSIG. Independent of the request: its header, question and trailer
    are added per request (``assemble``)."""

    chunks: tuple[Chunk, ...]
    record_count: int  # the zone's records (the closing SOA not counted again)


class _Packer:
    """Records into answer sections of at most ``limit`` octets of message each, owner
    names compressed against the owners already in the same message (RFC 1035 §4.1.4)."""

    def __init__(self, first_offset: int, limit: int) -> None:
        self.limit = limit
        self.chunks: list[Chunk] = []
        self._start(first_offset)

    def _start(self, offset: int) -> None:
        self.parts: list[bytes] = []
        self.offset = offset  # where the next record goes in its message
        self.count = 0
        self.targets: dict[bytes, int] = {}  # name (wire, lowercase) → its offset

    def flush(self) -> None:
        if self.count:
            self.chunks.append(Chunk(b"".join(self.parts), self.count))
        self._start(HEADER_LENGTH)

    def _owner(self, owner: bytes, starts: Sequence[int]) -> tuple[bytes, int]:
        """The owner as written here, and how many of its octets are written out."""
        targets = self.targets
        for start in starts:
            pointer = targets.get(owner[start:] if start else owner)
            if pointer is not None:
                return owner[:start] + (0xC000 | pointer).to_bytes(2, "big"), start
        return owner, len(owner)

    def add(self, owner: bytes, starts: Sequence[int], fixed: bytes, rdata: bytes) -> None:
        """One record: ``fixed`` is TYPE, CLASS, TTL; ``starts`` the owner's label offsets."""
        written, literal = self._owner(owner, starts)
        size = len(written) + len(fixed) + 2 + len(rdata)
        if self.offset + size > self.limit:
            if not self.count:
                raise RecordTooLarge(f"a record of {names.to_text(owner)} is larger than a whole message")
            self.flush()
            written, literal = self._owner(owner, starts)
            size = len(written) + len(fixed) + 2 + len(rdata)
        targets, offset = self.targets, self.offset
        for start in starts:
            if start >= literal or offset + start >= 0x4000:  # a pointer has 14 bits
                break
            targets[owner[start:] if start else owner] = offset + start
        self.parts.append(written + fixed + len(rdata).to_bytes(2, "big") + rdata)
        self.offset += size
        self.count += 1


def _label_starts(name: Name) -> tuple[int, ...]:
    """Offsets of the labels of a wire name, the root excluded: b"\\3www\\2ex\\0" → (0, 4)."""
    starts, offset = [], 0
    while name[offset]:
        starts.append(offset)
        offset += name[offset] + 1
    return tuple(starts)


def _transfer_order(zone: Zone) -> Iterator[RRset]:
    """SOA, every other RRset in zone-file order (the zone's node order), SOA again. RFC
    5936 §3.2 asks for no order; this one needs no sort and no large new container (a
    list or dict of every RRset, made young, is what prompts the garbage collector to
    walk it, with the GIL held, for milliseconds at a time)."""
    yield zone.soa
    for node in zone.nodes.values():
        for rrset in node.rrsets.values():
            if rrset.rtype != QTYPE.SOA:
                yield rrset
    yield zone.soa


def _incremental_order(zone: Zone, steps: Sequence[ZoneDelta]) -> Iterator[Records]:
    """RFC 1995 §4: the current SOA; for each step, its old SOA, the records it removed,
    its new SOA, the records it added; the current SOA again."""
    yield _records(zone.soa)
    for step in steps:
        yield _records(step.old_soa)
        yield from step.removed
        yield _records(step.new_soa)
        yield from step.added
    yield _records(zone.soa)


def _records(rrset: RRset) -> Records:
    return rrset.name, rrset.rtype, rrset.ttl, rrset.rdatas


def render_records(origin: Name, records: Iterable[Records]) -> RenderedZone:
    """Pack records for a transfer from ``origin`` (AXFR: ``render_zone``; IXFR:
    ``render_incremental``). Runs in a transfer worker thread: it pauses every
    ``YIELD_EVERY`` records so that the event loop can take the GIL at once."""
    question_length = len(origin) + 4  # the question echoes the apex (its case may differ, not its length)
    packer = _Packer(HEADER_LENGTH + question_length, TCP_MESSAGE_LIMIT - TRAILER_RESERVE)
    done = 0
    for name, rtype, ttl, rdatas in records:
        starts = _label_starts(name)
        fixed = struct.pack("!HHI", rtype, CLASS.IN, ttl)
        for rdata in rdatas:
            packer.add(name, starts, fixed, rdata_wire(rtype, rdata))
            done += 1
            if not done % YIELD_EVERY:
                time.sleep(YIELD_PAUSE)  # lets a waiting thread (the event loop) take the GIL now
    packer.flush()
    return RenderedZone(tuple(packer.chunks), done - 1)


def render_zone(zone: Zone) -> RenderedZone:
    """A zone version as its AXFR sends it."""
    return render_records(zone.origin, map(_records, _transfer_order(zone)))


def render_incremental(zone: Zone, steps: Sequence[ZoneDelta]) -> RenderedZone:
    """The differences from the first step's old serial to the zone's, as its IXFR sends them."""
    return render_records(zone.origin, _incremental_order(zone, steps))


def soa_chunk(zone: Zone) -> Chunk:
    """The zone's SOA alone (IXFR of a current client, RFC 1995 §2; IXFR over UDP)."""
    soa = zone.soa
    rdata = rdata_wire(QTYPE.SOA, soa.rdatas[0])
    fixed = struct.pack("!HHIH", QTYPE.SOA, CLASS.IN, soa.ttl, len(rdata))
    return Chunk(soa.name + fixed + rdata, 1)


def assemble(query: dns.message.Message, chunks: Sequence[Chunk], payload: int, signer: Signer | None,
             truncated: bool = False) -> list[bytes]:
    """The reply messages: each chunk under a header (ID, QR, AA, RD copied); the
    question and, when the query had EDNS, an OPT in the first only (RFC 5936 §2.2);
    every message TSIG-signed when the query was, each MAC covering the one before
    (RFC 8945 §5.3.1)."""
    question = query.question[0]
    question_wire = question.name.to_wire() + struct.pack("!HH", question.rdtype, question.rdclass)
    flags = FLAG_QR | FLAG_AA | (query.flags & FLAG_RD) | (FLAG_TC if truncated else 0)
    opt = b""
    if query.edns >= 0:  # version 0, no options, DO echoed (RFC 3225 §3)
        opt = b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, payload, query.ednsflags & dns.flags.DO, 0)
    messages: list[bytes] = []
    context = None
    for index, chunk in enumerate(chunks):
        first = index == 0
        additional = 1 if first and opt else 0
        header = struct.pack("!6H", query.id, flags, int(first), chunk.count, 0, additional)
        wire = header + question_wire + chunk.records + opt if first else header + chunk.records
        if signer is not None:
            wire, context = signer.sign(wire, context, multi=True)
        messages.append(wire)
        if index % 4 == 3:
            time.sleep(YIELD_PAUSE)  # a large transfer: let the event loop in between messages
    return messages
