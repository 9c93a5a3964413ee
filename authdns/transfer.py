"""Zone transfers out (AXFR, RFC 5936; IXFR, RFC 1995, from the zone's kept history)
with their access list and TSIG (RFC 8945, ``tsig.py``), and NOTIFY out (RFC 1996) with
retries.

``TransferResponder.respond(packet, peer)`` takes a TCP message and returns the framed
replies' bodies for a transfer query, or None for anything else (the ordinary query
path answers it). ``respond_udp()`` answers AXFR/IXFR over UDP. ``Notifier`` tells the
listed secondaries that a zone's serial changed.

Transfer messages are assembled from wire bytes: each zone version is packed once into
the answer sections of its messages (``render_zone``: records in zone order, owner
names compressed within each message, rdata names not), and that is cached; a request
then costs a header, the question, the OPT and, when signed, a TSIG per message (each
MAC chained to the one before, RFC 8945 §5.3.1). An IXFR from a serial the zone's
``history`` holds gets the differences since (``render_incremental``), packed per
request: they are small. Refusals are built with dnspython; the query path stays
dnslib. Records go out exactly as the zone file has them: zone order, no rotation, no
health. This module answers no ordinary queries; its only state is the packed-zone
cache and its counters.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import struct
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
from dnslib import CLASS, QTYPE, DNSBuffer, DNSLabel

from .hostport import format_host_port
from . import names
from .config import ServerConfig
from .names import Name
from .protocol import (EDE_NOT_AUTHORITATIVE, EDE_NOT_SUPPORTED, EDE_PROHIBITED, FLAG_AA, FLAG_QR, FLAG_RD,
                       FLAG_TC, HEADER_LENGTH, MIN_UDP_PAYLOAD, OPCODE_MASK, OPCODE_NOTIFY, TCP_MESSAGE_LIMIT,
                       TRANSFER_TYPES)
from .render import render_servfail
from .serials import serial_gt
from .state import StateHolder
from .transferspec import Address, AllowRule
from .tsig import FUDGE, Signed, Signer, check_request, keyring
from .zone import Records, RRset, Zone, ZoneDelta

log = logging.getLogger("authdns.transfer")

# Room kept free in every message for the OPT and TSIG records (a TSIG with a 255-octet
# key name and a SHA-512 MAC is under 370 octets: tsig.signature_size; an OPT without
# options 11).
TRAILER_RESERVE = 512
REFUSAL_LOG_INTERVAL = 1.0  # at most one "transfer refused" line a second (scanners)
# Packed zone versions kept (the newest per zone, the most recently transferred zones).
RENDER_CACHE_ZONES = 8
# Packing runs in a worker thread and gives the GIL away every YIELD_EVERY records
# (a fraction of a millisecond of work) by sleeping YIELD_PAUSE: a real sleep, so that
# the event loop, when it waits for the GIL, gets it at once instead of after the
# interpreter's 5 ms switch interval. Costs roughly a tenth of the packing time.
YIELD_EVERY = 64
YIELD_PAUSE = 0.00005


def allow_rules(zone: Zone, config: ServerConfig) -> tuple[AllowRule, ...]:
    """The zone's own ``transfer: allow:`` rules, then the server's ``--allow-transfer``."""
    own = zone.transfer.allow if zone.transfer is not None else ()
    return own + config.allow_transfer


def unknown_keys(zones: Iterable[Zone], config: ServerConfig) -> list[str]:
    """Allow rules naming a TSIG key the server was not given: they match nothing. For
    the caller to log after each load (``check`` cannot know the server's keys)."""
    places = [(f"{zone.path}: transfer allow", zone.transfer.allow) for zone in zones if zone.transfer is not None]
    places.append(("--allow-transfer", config.allow_transfer))
    return [f"{place} rule {rule.network} names TSIG key {rule.key}, which is not configured (--tsig-key); "
            "no transfer matches it" for place, rules in places for rule in rules
            if rule.key is not None and rule.key not in config.tsig_keys]


def peer_address(peer: tuple | None) -> Address | None:
    """The client's address from ``peername`` (scope id dropped: rules carry none), None
    when unknown."""
    if not peer:
        return None
    try:
        return ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None


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


# ---------------------------------------------------------------- zone → wire


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


def rrset_records(rrset: RRset) -> list[dns.rrset.RRset]:
    """An RRset as one-record dnspython RRsets in zone order (the NOTIFY's SOA)."""
    owner = dns.name.from_wire(rrset.name, 0)[0]
    result = []
    for rdata in rrset.rdatas:
        wire = rdata_wire(rrset.rtype, rdata)
        parsed = dns.rdata.from_wire(dns.rdataclass.IN, rrset.rtype, wire, 0, len(wire))
        result.append(dns.rrset.from_rdata(owner, rrset.ttl, parsed))
    return result


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Refusal:
    rcode: int
    ede: int
    reason: str


class TransferResponder:
    """AXFR/IXFR queries → reply messages. Reads ``holder.current`` once per request.

    Safe to call from worker threads (the TCP listener does, so that a large zone's
    messages are not built on the loop): what it reads is immutable, the packed-zone
    cache is guarded by a lock, and its counters can only lose a count to a race."""

    def __init__(self, holder: StateHolder, config: ServerConfig) -> None:
        self.holder = holder
        self.config = config
        self.keyring = keyring(config.tsig_keys)
        self._rendered: OrderedDict[Name, tuple[Zone, RenderedZone]] = OrderedDict()
        self._render_lock = threading.Lock()
        self._last_refusal_log = 0.0
        self.transfers = 0
        self.refused = 0
        # Messages are built here, not on the event loop (see TcpListener), at most two
        # at a time, so transfers neither stall queries much nor take the reload threads.
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="authdns-transfer")

    def respond(self, packet: bytes, peer: tuple | None) -> list[bytes] | None:
        """A TCP message: None unless it is an AXFR/IXFR query; else the messages to send.
        An unexpected error is logged and answered SERVFAIL, as the responder does (signed
        when the query was: RFC 8945 §5.3)."""
        if not is_transfer_query(packet):
            return None
        query = None
        try:
            query = self._parse(packet)
            if query is None or isinstance(query, bytes):
                return None if query is None else [query]
            return self._answer(query, peer, tcp=True)
        except Exception:
            log.exception("internal error answering a transfer query; answered SERVFAIL")
            reply = render_servfail(packet)
            signer = _signer(query) if isinstance(query, dns.message.Message) else None
            if reply is not None and signer is not None:
                reply = signer.sign(reply)[0]
            return [reply] if reply is not None else []

    def respond_udp(self, packet: bytes, peer: tuple | None) -> bytes | None:
        """AXFR/IXFR over UDP. AXFR: REFUSED (RFC 5936 §4.2: UDP is not defined for it).
        IXFR: the same access rules, and when allowed our SOA only, which tells the
        client to come back over TCP (RFC 1995 §2; BIND and NSD do the same); TC set
        instead when even that does not fit the client's size."""
        query = self._parse(packet)
        if query is None or isinstance(query, bytes):
            return query
        if query.question and query.question[0].rdtype == dns.rdatatype.AXFR:
            return self._refuse(query, Refusal(dns.rcode.REFUSED, EDE_PROHIBITED, "AXFR over UDP"))
        limit = max(MIN_UDP_PAYLOAD, min(query.payload, self.config.udp_payload)) if query.edns >= 0 \
            else MIN_UDP_PAYLOAD
        reply = self._answer(query, peer, tcp=False)[0]
        if len(reply) > limit:
            reply = assemble(query, [Chunk(b"", 0)], self.config.udp_payload, _signer(query), truncated=True)[0]
        return reply

    def _answer(self, query: dns.message.Message, peer: tuple | None, tcp: bool) -> list[bytes]:
        decision = self._decide(query, peer_address(peer))
        if isinstance(decision, Refusal):
            self.refused += 1
            self._log_refusal(query, peer, decision)
            return [self._refuse(query, decision)]
        zone = decision
        qtype = query.question[0].rdtype
        client_serial = _client_serial(query) if qtype == dns.rdatatype.IXFR else None
        if qtype == dns.rdatatype.IXFR and (not tcp or (client_serial is not None
                                                        and not serial_gt(zone.serial, client_serial))):
            # Over UDP, or the client is current: our SOA alone (RFC 1995 §2, §4).
            return assemble(query, [soa_chunk(zone)], self.config.udp_payload, _signer(query))
        steps = steps_from(zone, client_serial) if client_serial is not None else None
        rendered = render_incremental(zone, steps) if steps else self._rendered_zone(zone)
        messages = assemble(query, rendered.chunks, self.config.udp_payload, _signer(query))
        self.transfers += 1
        log.info("transfer zone=%s peer=%s type=%s serial=%d from=%s style=%s records=%d messages=%d tsig=%s",
                 names.to_text(zone.origin), _peer_text(peer), dns.rdatatype.to_text(qtype), zone.serial,
                 "none" if client_serial is None else client_serial, "incremental" if steps else "full",
                 rendered.record_count, len(messages), _key_text(query) or "none")
        return messages

    def _decide(self, query: dns.message.Message, address: Address | None) -> Zone | Refusal:
        """Whose zone, and may this client have it (README, "Secondaries")."""
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return Refusal(dns.rcode.REFUSED, EDE_NOT_SUPPORTED, "class not IN")
        zone = self.holder.current.snapshot.zones.get(question.name.canonicalize().to_wire())
        if zone is None:
            # No zone has this apex: "not authoritative for the zone" (RFC 8914 §4.21).
            return Refusal(dns.rcode.REFUSED, EDE_NOT_AUTHORITATIVE, "not a zone apex")
        key = _key_text(query)
        rules = allow_rules(zone, self.config)
        if address is not None and any(rule.matches(address) and rule.key in (None, key) for rule in rules):
            return zone
        needs_key = address is not None and any(rule.matches(address) for rule in rules)
        return Refusal(dns.rcode.REFUSED, EDE_PROHIBITED, "wrong or missing TSIG key" if needs_key
                       else "not in the allow list")

    def _rendered_zone(self, zone: Zone) -> RenderedZone:
        """Packed once per zone version (a reload's new Zone object packs again); the
        newest version of the ``RENDER_CACHE_ZONES`` most recently transferred zones is
        kept. One lock: a second transfer of a version being packed waits and reuses it."""
        with self._render_lock:
            cached = self._rendered.get(zone.origin)
            if cached is None or cached[0] is not zone:
                cached = (zone, render_zone(zone))
                self._rendered[zone.origin] = cached
            self._rendered.move_to_end(zone.origin)
            while len(self._rendered) > RENDER_CACHE_ZONES:
                self._rendered.popitem(last=False)
            return cached[1]

    def _parse(self, packet: bytes) -> dns.message.Message | bytes | None:
        """The query, its TSIG verified (``tsig.check_request``: ``keyring`` is then the
        key), an error reply when TSIG fails, or None when dnspython cannot read it (the
        ordinary path then says FORMERR)."""
        checked = check_request(packet, self.keyring, self.config.udp_payload)
        if isinstance(checked, bytes):
            return checked
        if isinstance(checked, Signed):
            query = checked.message
        else:
            try:
                query = dns.message.from_wire(packet, keyring=False)
            except Exception:  # any parse failure: not ours to answer
                return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return None
        return query

    def _refuse(self, query: dns.message.Message, refusal: Refusal) -> bytes:
        """REFUSED with an Extended DNS Error when the query had EDNS (RFC 8914); signed
        when the query was (RFC 8945 §5.3)."""
        response = dns.message.make_response(query, our_payload=self.config.udp_payload)
        response.set_rcode(refusal.rcode)
        if query.edns >= 0:
            response.use_edns(0, query.ednsflags & dns.flags.DO, self.config.udp_payload,
                              options=[dns.edns.EDEOption(refusal.ede)])
        signer = _signer(query)
        if signer is None:
            return response.to_wire()
        response.tsig = None  # signed by the Signer, as every other signed reply (rrl.py re-signs its slips)
        return signer.sign(response.to_wire())[0]

    def _log_refusal(self, query: dns.message.Message, peer: tuple | None, refusal: Refusal) -> None:
        now = time.monotonic()
        if now - self._last_refusal_log < REFUSAL_LOG_INTERVAL:
            return
        self._last_refusal_log = now
        log.info("transfer refused zone=%s peer=%s type=%s reason=%s tsig=%s",
                 query.question[0].name.to_text(), _peer_text(peer),
                 dns.rdatatype.to_text(query.question[0].rdtype), refusal.reason.replace(" ", "-"),
                 _key_text(query) or "none")


def _client_serial(query: dns.message.Message) -> int | None:
    """The serial an IXFR says the client has: its authority SOA, owned by the zone's
    apex (RFC 1995 §3); None without one (then it gets the whole zone)."""
    apex = query.question[0].name
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == apex and len(rrset):
            return rrset[0].serial
    return None


def steps_from(zone: Zone, serial: int) -> tuple[ZoneDelta, ...] | None:
    """The steps of the zone's history from ``serial`` to now, or None when it holds no
    step from that serial, or when they would send more records than the whole zone
    (RFC 1995 §4 lets the server send the full zone then)."""
    for index, step in enumerate(zone.history):
        if step.old_serial == serial:
            steps = zone.history[index:]
            if 2 + sum(step.record_count for step in steps) > zone.record_count + 1:  # AXFR: SOA twice
                return None
            return steps
    return None


def _signer(query: dns.message.Message) -> Signer | None:
    """What signs the replies: the verified key and the request's MAC; None unsigned."""
    return Signer(query.keyring, query.mac) if query.had_tsig and query.keyring else None


def _key_text(query: dns.message.Message) -> str | None:
    """The verified TSIG key's name as ``AllowRule.key`` spells it, or None when unsigned."""
    if not query.had_tsig or not query.keyring:
        return None
    return query.keyname.canonicalize().to_text()


def _peer_text(peer: tuple | None) -> str:
    return format_host_port(peer[0], peer[1]) if peer else "unknown"


# ---------------------------------------------------------------- NOTIFY out


class Notifier:
    """NOTIFY (RFC 1996) to each secondary a zone lists, whenever its serial changes.

    Each target gets the message again after ``notify_retry`` seconds, then twice that,
    and so on, until it answers (RFC 1996 §3.6) or ``notify_attempts`` messages went
    unanswered. A newer change of a zone replaces the pending retries for it. A NOTIFY is
    TSIG-signed when the first allow rule matching the target's address names a key."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.keyring = keyring(config.tsig_keys)
        self.tasks: dict[Name, asyncio.Task] = {}

    def zones_changed(self, zones: Iterable[Zone]) -> None:
        """Schedule NOTIFYs for these zones (event-loop thread only)."""
        loop = asyncio.get_running_loop()
        for zone in zones:
            if zone.transfer is None or not zone.transfer.notify:
                continue
            pending = self.tasks.pop(zone.origin, None)
            if pending is not None:
                pending.cancel()  # superseded: the secondaries want the newest serial only
            task = loop.create_task(self._notify_zone(zone))
            self.tasks[zone.origin] = task
            task.add_done_callback(functools.partial(self._forget, zone.origin))

    def _forget(self, origin: Name, task: asyncio.Task) -> None:
        if self.tasks.get(origin) is task:
            del self.tasks[origin]

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()

    async def _notify_zone(self, zone: Zone) -> None:
        assert zone.transfer is not None
        await asyncio.gather(*(self._notify_target(zone, target) for target in zone.transfer.notify))

    def key_for(self, zone: Zone, host: str) -> dns.tsig.Key | None:
        """The key of the first allow rule matching the target's address, if configured."""
        address = ipaddress.ip_address(host)
        for rule in allow_rules(zone, self.config):
            if rule.matches(address):
                return self.keyring.get(dns.name.from_text(rule.key)) if rule.key else None
        return None

    async def _notify_target(self, zone: Zone, target: tuple[str, int]) -> None:
        fields = (f"zone={names.to_text(zone.origin)} target={_target_text(target)} serial={zone.serial}")
        try:
            with _connected_socket(target) as sock:
                attempts = await self._attempts(sock, zone, target, fields)
        except OSError as error:
            log.warning("notify gave up %s reason=%s", fields, error.strerror or error)
            return
        if attempts is None:
            log.warning("notify gave up %s attempts=%d", fields, self.config.notify_attempts)

    async def _attempts(self, sock: socket.socket, zone: Zone, target: tuple[str, int], fields: str) -> int | None:
        """Send and wait, doubling the wait; the attempt that was answered, or None."""
        message = notify_message(zone, self.key_for(zone, target[0]))
        macs: list[bytes] = []
        delay = self.config.notify_retry
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.config.notify_attempts + 1):
            wire = message.to_wire()
            if message.had_tsig:
                macs.append(message.mac)
            try:
                sock.send(wire)
            except OSError as error:
                log.info("notify not sent %s attempt=%d reason=%s", fields, attempt, error.strerror or error)
            else:
                log.info("notify sent %s attempt=%d", fields, attempt)
            reply = await _await_reply(sock, message, macs, loop.time() + delay)
            if reply is not None:
                rcode = dns.rcode.to_text(reply.rcode())
                if reply.rcode() == dns.rcode.NOERROR:
                    log.info("notify acknowledged %s attempt=%d", fields, attempt)
                else:  # the secondary answered: retrying cannot change its mind
                    log.warning("notify rejected %s attempt=%d rcode=%s", fields, attempt, rcode)
                return attempt
            delay *= 2
        return None


def notify_message(zone: Zone, key: dns.tsig.Key | None) -> dns.message.Message:
    """NOTIFY for a zone: QR=0, AA=1, question (zone, SOA, IN), and the new SOA in the
    answer section as a hint (RFC 1996 §3.7); one ID for all retries of one change."""
    origin = dns.name.from_wire(zone.origin, 0)[0]
    message = dns.message.make_query(origin, dns.rdatatype.SOA)
    message.flags = dns.flags.AA
    message.set_opcode(dns.opcode.NOTIFY)
    message.answer.append(rrset_records(zone.soa)[0])
    if key is not None:
        message.use_tsig(key, fudge=FUDGE)
    return message


async def _await_reply(sock: socket.socket, message: dns.message.Message, macs: list[bytes],
                       deadline: float) -> dns.message.Message | None:
    """The secondary's answer to ``message`` (same ID, QR=1, opcode NOTIFY, valid TSIG
    when signed: RFC 1996 §4.7), or None when ``deadline`` passes first."""
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), remaining)
        except asyncio.TimeoutError:
            return None
        except OSError:
            # ICMP port unreachable, typically: nobody listens yet. Wait out this
            # attempt's time rather than retry at once.
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            return None
        reply = _matching_reply(data, message, macs)
        if reply is not None:
            return reply
    return None


def _matching_reply(data: bytes, message: dns.message.Message, macs: list[bytes]) -> dns.message.Message | None:
    if len(data) < 12:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    if ident != message.id or not flags & FLAG_QR or (flags & OPCODE_MASK) >> 11 != OPCODE_NOTIFY:
        return None
    for mac in reversed(macs or [b""]):  # a late answer to an earlier attempt counts too
        try:
            return dns.message.from_wire(data, keyring=message.keyring if macs else None, request_mac=mac)
        except Exception:
            continue  # not signed by our key, or not for this attempt: keep waiting
    return None


def _connected_socket(target: tuple[str, int]) -> socket.socket:
    """A UDP socket connected to the target: the kernel keeps other senders' datagrams
    out, and picks the source address the secondary sees (its allow-notify list)."""
    host, port = target
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _target_text(target: tuple[str, int]) -> str:
    return format_host_port(*target)
