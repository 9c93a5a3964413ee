"""``Responder.respond(packet, via) -> bytes | Stream | None``: the whole query
path, bytes to bytes; a zone transfer over TCP is answered with a ``Stream``
(transfer/zonetransfer.py builds its messages off the loop), the one answer that is not one message.

Parse (``query``), resolve (``answer``), render (``render``); count what happened. A
query signed with TSIG is checked first and its reply signed (``tsig``). An
unexpected exception never reaches the transport: it is counted, logged at most once a
second, and answered SERVFAIL. Owns no sockets and no threads. The precompiled fast
path (issue 5) slots in before the parse, keyed on the question bytes.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from time import perf_counter
from dataclasses import replace
from typing import Protocol

from dnslib import CLASS

from authdns.answering.answer import Answer, answer_key, rcode_key, resolve, resolve_chaos
from authdns.configuration.config import ServerConfig
from authdns.balancing.counters import LATENCY_BOUNDS, VIA_SLOTS, QueryCounters
from authdns.balancing.arrange import arrange
from authdns.balancing.ordering import Balancer
from authdns.balancing.orders import UNLISTED
from authdns.engine.querylog import log_query
from authdns.base.hostport import client_prefix
from authdns.answering.ecs import ClientSubnet
from authdns.base.protocol import BYTE_TC, EDE_NOT_SUPPORTED, EDE_PROHIBITED, RCODE_NOERROR, RCODE_REFUSED, TRANSFER_TYPES
from authdns.answering.query import Query, Reject, Via, parse_query
from authdns.answering.render import render, render_reject, render_servfail
from authdns.engine.cache import Dynamic, Static
from authdns.engine.state import ServingState, StateHolder
from authdns.base.tsig import Signer, check_request, keyring
from authdns.answering.wire import RD_CD, is_transfer_query, question_key, splice

log = logging.getLogger("authdns.responder")


class Stream:
    """An answer of several messages (a zone transfer, RFC 5936 §2.2), returned instead of
    bytes; the TCP transport awaits ``messages()`` and sends each."""

    __slots__ = ()

    async def messages(self) -> list[bytes]:
        raise NotImplementedError


class Transfers(Protocol):
    """What the responder asks of the zone-transfer side (transfer.TransferResponder)."""

    def stream(self, packet: bytes, peer: tuple | None) -> Stream | None: ...

    def respond_udp(self, packet: bytes, peer: tuple | None) -> bytes | None: ...

LATENCY_SAMPLE = 16  # one query in this many is timed: two clock reads cost ~1 % of a fast answer


class Responder:
    def __init__(self, holder: StateHolder, config: ServerConfig, balancer: Balancer | None = None,
                 transfer: Transfers | None = None) -> None:
        self.holder = holder
        self.config = config
        self.balancer = balancer or Balancer()
        self.transfer = transfer  # answers AXFR/IXFR (peer-dependent); None: REFUSED
        self.counters = QueryCounters()  # balancing/counters.py: the read model's field list
        self.fast_hits = 0  # answers spliced from the cache (answering/wire.py) rather than parsed
        self.query_log = config.query_log  # engine/querylog.py; switched at runtime by `ctl querylog`
        self.udp_max = config.udp_payload
        self.keyring = keyring(config.tsig_keys)  # signed queries are answered signed (base/tsig.py)
        self._last_error_log = 0.0
        self._tick = 0
        # The last reply's Answer.key (its kind, then what it is about), set by every
        # respond() and read right after it on the same thread: the UDP listener's rate
        # limiter and the query log take it instead of reading the reply's bytes.
        self.reply_key = b""

    def respond(self, packet: bytes, via: Via, peer: tuple | None = None) -> bytes | Stream | None:
        self._tick = tick = self._tick + 1
        if tick % LATENCY_SAMPLE:
            return self._respond_counted(packet, via, peer)
        started = perf_counter()
        reply = self._respond_counted(packet, via, peer)
        elapsed = perf_counter() - started
        counters = self.counters
        counters.latency[bisect_left(LATENCY_BOUNDS, elapsed)] += 1
        counters.latency_sum += elapsed
        return reply

    def _respond_counted(self, packet: bytes, via: Via, peer: tuple | None) -> bytes | Stream | None:
        try:
            state = self.holder.current  # read once: one generation for the whole query
            found = question_key(packet, via, self.udp_max)
            if found is not None:
                end, types = found[1], self.counters.types
                qtype = (packet[end - 4] << 8) | packet[end - 3]
                types[qtype] = types.get(qtype, 0) + 1
            entry = state.cache.entries.get(found[0]) if found is not None else None
            if entry is not None:
                self.fast_hits += 1
                self.reply_key = entry.key
                if entry.__class__ is Static:
                    reply = splice(packet, found[1], entry.flags, entry.counts, entry.body)
                else:
                    reply = self._dynamic(entry, packet, found[1], state, peer)
            else:
                self.reply_key = b""  # set by _answer_request when the engine answers
                reply = self._respond(packet, via, peer, state, found)
                if reply.__class__ is not bytes and isinstance(reply, Stream):
                    return reply  # counted by transfer/zonetransfer.py, message by message
        except Exception:
            self._internal_error()
            reply = render_servfail(packet)
            self.reply_key = rcode_key(reply[3] & 0xF) if reply is not None else b""
            return reply
        counters = self.counters
        if reply is None:
            counters.dropped += 1
        else:
            if not self.reply_key:  # a reject, a transfer, a TSIG error: known by its rcode
                self.reply_key = rcode_key(reply[3] & 0xF)
            counters.answers[via * VIA_SLOTS + (reply[3] & 0xF)] += 1
            if reply[2] & BYTE_TC:
                counters.truncated += 1
        if self.query_log:
            log_query(packet, reply, via, peer, self.reply_key)
        return reply

    def _internal_error(self) -> None:
        """Counted, and logged at most once a second (a bug hit by every query must not
        flood the log); the caller answers SERVFAIL."""
        self.counters.internal_errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:
            self._last_error_log = now
            log.exception("internal error answering a query; answered SERVFAIL")

    def _dynamic(self, entry: Dynamic, packet: bytes, question_end: int, state: ServingState,
                 peer: tuple | None) -> bytes:
        """A balanced answer from the cache: its Orders move the client's rotors as
        planning it would (health, drains as they are now) and name the index of its
        order; the variant for that index is spliced, rendered the first time it is needed."""
        orders = entry.orders
        if orders is None or not orders.live or orders.health is not state.health or orders.overrides is not state.overrides:
            orders = entry.orders = self.balancer.orders(entry.answer, state.health, state.overrides, orders)
            entry.variants = {}
        index = orders.advance(self._client(peer))
        variant = entry.variants.get(index)
        if variant is None:
            signature = orders.signature_at(index)
            variant = entry.rendered.get(signature) if signature is not None else None
            if variant is None:  # rendered once per order, across health views (engine/cache.py)
                ordered = arrange(entry.answer, orders.plans_at(index))
                variant = _precompiled(render(entry.query, ordered, self.config.udp_payload), question_end, entry.key)
                if signature is not None:
                    entry.keep(signature, variant)
            if index != UNLISTED:
                entry.variants[index] = variant
        return splice(packet, question_end, variant.flags, variant.counts, variant.body)

    def _respond(self, packet: bytes, via: Via, peer: tuple | None, state: ServingState,
                 found: tuple[bytes, int] | None) -> bytes | Stream | None:
        if via is Via.TCP and self.transfer is not None and found is None and is_transfer_query(packet):
            # Who asks decides (access rules, TSIG, verified by transfer/zonetransfer.py on the signed
            # bytes), and a zone is many messages (RFC 5936 §2.2): the transfer answers.
            stream = self.transfer.stream(packet, peer)
            if stream is not None:
                return stream
        signer = None
        readable = packet
        if found is None and any(packet[6:12]):  # records beyond the question: a TSIG among them?
            checked = check_request(packet, self.keyring, self.config.udp_payload)
            if isinstance(checked, bytes):
                return checked  # malformed, unknown key, bad MAC or time (RFC 8945 §5.2)
            if checked is not None:
                signer, readable = checked.signer, checked.unsigned
        if signer is None:
            return self._answer_request(packet, readable, via, peer, state, found, None)
        try:
            return self._answer_request(packet, readable, via, peer, state, found, signer)
        except Exception:
            # A signed requester discards an unsigned reply (RFC 8945 §5.3): sign the SERVFAIL.
            self._internal_error()
            self.reply_key = b""  # the answer's key may be set already: this is a SERVFAIL (by its rcode)
            servfail = render_servfail(readable)
            return signer.sign(servfail)[0] if servfail is not None else None

    def _answer_request(self, packet: bytes, readable: bytes, via: Via, peer: tuple | None, state: ServingState,
                        found: tuple[bytes, int] | None, signer: Signer | None) -> bytes | None:
        query = parse_query(readable, via, self.config.udp_payload, self.config.ecs)
        if query is None:
            return None
        if found is None and isinstance(query, Query):  # counted in respond() otherwise
            types = self.counters.types
            types[query.qtype] = types.get(query.qtype, 0) + 1
        if isinstance(query, Reject):
            self.reply_key = rcode_key(query.rcode)  # BADVERS too: its header rcode reads NOERROR
            return _signed(render_reject(query, self.config.udp_payload), signer)
        if self.transfer is not None and query.qtype in TRANSFER_TYPES and via is Via.UDP and query.qclass == CLASS.IN:
            # Over UDP too the transfer decides and signs: SOA-only for an allowed IXFR
            # (RFC 1995 §2), REFUSED otherwise (AXFR over UDP is not defined, RFC 5936 §4.2).
            reply = self.transfer.respond_udp(packet, peer)
            if reply is not None:
                rcode = reply[3] & 0xF
                self.reply_key = rcode_key(rcode) if rcode else answer_key(query.qname, query.qtype)
                return reply
        if signer is not None:  # the signature must fit in the client's size too
            query = replace(query, size_limit=query.size_limit - signer.reserve)
        answer = self._answer(state.snapshot, query)
        if isinstance(answer, Reject):
            self.reply_key = rcode_key(answer.rcode)
            return _signed(render_reject(answer, self.config.udp_payload), signer)
        self.reply_key = answer.key(query.qname, query.qtype)
        if found is not None and query.qclass == CLASS.IN:
            return self._cache_and_answer(answer, query, packet, found, state, peer)
        # Resolve → order → render (ARCHITECTURE.md rule 2): the engine decided what,
        # the balancer decides the order from this same state's health and overrides.
        # A query with a Client Subnet never has a cache key (answering/wire.py): it comes here.
        subnet = query.edns.subnet if query.edns is not None else None
        answer = self.balancer.apply(answer, state.health, state.overrides, self._client(peer, subnet))
        scope = subnet.scope if subnet is not None and subnet.key is not None and self.balancer.client_rotated else 0
        return _signed(render(query, answer, self.config.udp_payload, scope), signer)

    def _client(self, peer: tuple | None, subnet: ClientSubnet | None = None) -> bytes | None:
        """Whose rotation a balanced answer moves: the query's Client Subnet when it
        gives one (cut to /24, /56, or its own shorter prefix: answering/ecs.py), else
        the peer's /24 (/56), so each resolver, and each subnet a resolver names, walks
        its own cycle (balancing/rotors.py); None when rotations are not kept per client
        or nobody asked over the network."""
        if not self.balancer.rotors.limit:
            return None
        if subnet is not None:
            key = subnet.key
            if key is not None:
                return key
        return client_prefix(peer[0]) if peer is not None else None

    def _cache_and_answer(self, answer: Answer, query: Query, packet: bytes, found: tuple[bytes, int],
                          state: ServingState, peer: tuple | None) -> bytes:
        """Answer through a new cache entry: a Dynamic one when any RRset is balanced
        (ordered per query), else the rendered response itself. A balanced answer the
        full cache does not take is ordered as an uncached one: no Orders for one query."""
        key, question_end = found
        zones = _zones_touched(state.snapshot, query.qname, answer)
        negative = answer.rcode != RCODE_NOERROR
        if any(placed.rrset.balance is not None for placed in answer.answer + answer.additional):
            entry = Dynamic(answer, query, self.reply_key)
            if not state.cache.put(key, entry, zones, negative):
                return render(query, self.balancer.apply(answer, state.health, state.overrides, self._client(peer)),
                              self.config.udp_payload)
            return self._dynamic(entry, packet, question_end, state, peer)
        reply = render(query, answer, self.config.udp_payload)
        state.cache.put(key, _precompiled(reply, question_end, self.reply_key), zones, negative)
        return reply

    def _answer(self, snapshot, query: Query) -> Answer | Reject:
        if query.qclass == CLASS.CH:
            return resolve_chaos(query.qname, query.qtype, self.config.version, self.config.identity)
        if query.qclass != CLASS.IN:
            # Only IN and CH are served; EDE "Not Supported" says why (RFC 8914 §4.22).
            return Reject(query.header, RCODE_REFUSED, query.question, query.edns, EDE_NOT_SUPPORTED)
        if query.qtype in TRANSFER_TYPES:
            # Not answered by transfer/zonetransfer.py (none given, or unreadable to it): refused by
            # policy, EDE "Prohibited" (RFC 8914 §4.19).
            return Reject(query.header, RCODE_REFUSED, query.question, query.edns, EDE_PROHIBITED)
        return resolve(snapshot, query.qname, query.qtype)


def _signed(reply: bytes, signer: Signer | None) -> bytes:
    """The reply to a signed request signed with its key (RFC 8945 §5.3); others as they are."""
    return reply if signer is None else signer.sign(reply)[0]


def _precompiled(reply: bytes, question_end: int, key: bytes) -> Static:
    """A rendered response as a cache variant: flags without the query's RD/CD (copied
    per query), the counts, and everything after the question."""
    flags = ((reply[2] << 8) | reply[3]) & ~RD_CD
    return Static(flags, reply[4:12], reply[question_end:], key)


def _zones_touched(snapshot, qname, answer: Answer) -> set:
    """The origins of the zones an answer came from (for invalidation by zone)."""
    zones = set()
    for name in [qname] + [placed.owner for placed in answer.answer + answer.authority + answer.additional]:
        zone = snapshot.find_zone(name)
        if zone is not None:
            zones.add(zone.origin)
    return zones
