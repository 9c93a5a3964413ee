"""Zone transfers out: AXFR (RFC 5936) and IXFR (RFC 1995, from the zone's kept
history), answered to whoever the access rules admit (``transferaccess``), signed when
the request was (RFC 8945, ``tsig``), from messages ``transferpack`` builds.

The responder hands a transfer query over TCP to ``TransferResponder.stream(packet,
peer)``, which checks its TSIG and reads it at once and returns a ``TransferStream``
(None when dnspython cannot read it: the ordinary path says FORMERR); the TCP listener
sends what ``TransferStream.messages()`` builds in the transfer executor, one framed
message each. ``respond_udp()`` answers AXFR/IXFR over UDP.

Each zone version is packed once and that is cached here (the newest version of the
most recently transferred zones); a request then costs a header, the question, the OPT
and, when signed, a TSIG per message. An IXFR from a serial the zone's ``history``
holds gets the differences since, packed per request: they are small. Refusals are
built with dnspython; the query path stays dnslib. Records go out exactly as the zone
file has them: zone order, no rotation, no health. NOTIFY out is ``transfer/notify.py``. Its
only state is the packed-zone cache and its counters.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from authdns.base import names
from authdns.configuration.config import ServerConfig
from authdns.base.hostport import format_host_port
from authdns.base.names import Name
from authdns.base.protocol import EDE_PROHIBITED, MIN_UDP_PAYLOAD
from authdns.answering.render import render_servfail
from authdns.engine.responder import Stream
from authdns.zones.serials import serial_gt
from authdns.engine.state import StateHolder
from authdns.transfer.access import Refusal, decide, peer_address
from authdns.zones.transferspec import Address
from authdns.transfer.pack import Chunk, RenderedZone, assemble, render_incremental, render_zone, soa_chunk
from authdns.base.tsig import Signed, Signer, check_request, keyring
from authdns.zones.zone import Zone, ZoneDelta

log = logging.getLogger("authdns.transfer")

REFUSAL_LOG_INTERVAL = 1.0  # at most one "transfer refused" line a second (scanners)
# Packed zone versions kept (the newest per zone, the most recently transferred zones).
RENDER_CACHE_ZONES = 8


class TransferStream(Stream):
    """The answer to an AXFR/IXFR over TCP: the messages of one transfer (RFC 5936 §2.2),
    built off the event loop in the transfer executor when the transport asks for them.
    What the responder returns for a transfer query, as it returns bytes for others."""

    __slots__ = ("transfer", "query", "packet", "peer")

    def __init__(self, transfer: "TransferResponder", query: dns.message.Message | bytes, packet: bytes,
                 peer: tuple | None) -> None:
        self.transfer, self.query, self.packet, self.peer = transfer, query, packet, peer

    async def messages(self) -> list[bytes]:
        """Every message to send, in order."""
        if isinstance(self.query, bytes):
            return [self.query]  # a TSIG error (RFC 8945 §5.2): one message
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.transfer.executor, self.transfer.messages, self.query, self.packet,
                                          self.peer)


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

    def stream(self, packet: bytes, peer: tuple | None) -> TransferStream | None:
        """An AXFR/IXFR over TCP (``wire.is_transfer_query``): its TSIG checked and its query
        read now, its messages built when the transport reads the stream; None when
        dnspython cannot read it (the ordinary path then says FORMERR)."""
        query = self._parse(packet)
        return None if query is None else TransferStream(self, query, packet, peer)

    def messages(self, query: dns.message.Message, packet: bytes, peer: tuple | None) -> list[bytes]:
        """The messages of one transfer, in a transfer executor thread. An unexpected error
        is logged and answered SERVFAIL, as the responder does (signed when the query was:
        RFC 8945 §5.3)."""
        try:
            return self._answer(query, peer, tcp=True)
        except Exception:
            log.exception("internal error answering a transfer query; answered SERVFAIL")
            reply = render_servfail(packet)
            signer = _signer(query)
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
        """Whose zone, and may this client have it (``transferaccess.decide``)."""
        question = query.question[0]
        zone = self.holder.current.snapshot.zones.get(question.name.canonicalize().to_wire())
        return decide(zone, question.rdclass == dns.rdataclass.IN, _key_text(query), address, self.config)

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
        response.tsig = None  # signed by the Signer, as every other signed reply (serve/rrl.py re-signs its slips)
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
