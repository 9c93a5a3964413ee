"""``Responder.respond(packet, via) -> bytes | None``: the whole query path, bytes to bytes.

Parse (``query``), resolve (``answer``), render (``render``); count what happened. An
unexpected exception never reaches the transport: it is counted, logged at most once a
second, and answered SERVFAIL. Owns no sockets and no threads. The precompiled fast
path (issue 5) slots in before the parse, keyed on the question bytes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dnslib import CLASS, QTYPE

from .answer import Answer, resolve, resolve_chaos
from .config import ServerConfig
from .ordering import Balancer
from .query import EDE_NOT_SUPPORTED, EDE_PROHIBITED, RCODE_REFUSED, Query, Reject, Via, parse_query
from .render import render, render_reject, render_servfail
from .state import StateHolder

if TYPE_CHECKING:
    from .transfer import TransferResponder

log = logging.getLogger("authdns.responder")

# Zone transfers: refused here unless a TransferResponder is given (transfer.py), which
# answers them over UDP; over TCP the listener hands them to it first.
TRANSFER_TYPES = (QTYPE.AXFR, QTYPE.IXFR)


@dataclass(slots=True)
class Counters:
    queries: Counter = field(default_factory=Counter)  # (transport, rcode) -> count
    dropped: int = 0
    truncated: int = 0
    internal_errors: int = 0


class Responder:
    def __init__(self, holder: StateHolder, config: ServerConfig, balancer: Balancer | None = None,
                 transfer: TransferResponder | None = None) -> None:
        self.holder = holder
        self.config = config
        self.balancer = balancer or Balancer()
        self.transfer = transfer  # answers AXFR/IXFR over UDP (peer-dependent); None: REFUSED
        self.counters = Counters()
        self._last_error_log = 0.0

    def respond(self, packet: bytes, via: Via, peer: tuple | None = None) -> bytes | None:
        try:
            reply = self._respond(packet, via, peer)
        except Exception:
            self.counters.internal_errors += 1
            now = time.monotonic()
            if now - self._last_error_log >= 1.0:
                self._last_error_log = now
                log.exception("internal error answering a query; answered SERVFAIL")
            return render_servfail(packet)
        if reply is None:
            self.counters.dropped += 1
        else:
            self.counters.queries[(via.name, reply[3] & 0xF)] += 1
            if reply[2] & 0x02:
                self.counters.truncated += 1
        return reply

    def _respond(self, packet: bytes, via: Via, peer: tuple | None = None) -> bytes | None:
        state = self.holder.current  # read once: one generation for the whole query
        query = parse_query(packet, via, self.config.udp_payload)
        if query is None:
            return None
        if isinstance(query, Reject):
            return render_reject(query, self.config.udp_payload)
        if self.transfer is not None and query.qtype in TRANSFER_TYPES and via is Via.UDP and query.qclass == CLASS.IN:
            # Who asks decides (access list, TSIG), so transfer.py answers: SOA-only for an
            # allowed IXFR (RFC 1995 §2), REFUSED otherwise. Over TCP the listener hands
            # transfers to it before they get here.
            reply = self.transfer.respond_udp(packet, peer)
            if reply is not None:
                return reply
        answer = self._answer(state.snapshot, query)
        if isinstance(answer, Reject):
            return render_reject(answer, self.config.udp_payload)
        # Resolve → order → render (ARCHITECTURE.md rule 2): the engine decided what,
        # the balancer decides the order from this same state's health and overrides.
        answer = self.balancer.apply(answer, state.health, state.overrides)
        return render(query, answer, self.config.udp_payload)

    def _answer(self, snapshot, query: Query) -> Answer | Reject:
        if query.qclass == CLASS.CH:
            return resolve_chaos(query.qname, query.qtype, self.config.version, self.config.identity)
        if query.qclass != CLASS.IN:
            # Only IN and CH are served; EDE "Not Supported" says why (RFC 8914 §4.22).
            return Reject(query.header, RCODE_REFUSED, query.question, query.edns, EDE_NOT_SUPPORTED)
        if query.qtype in TRANSFER_TYPES:
            # Not answered by transfer.py (none given, or unreadable to it): refused by
            # policy, EDE "Prohibited" (RFC 8914 §4.19).
            return Reject(query.header, RCODE_REFUSED, query.question, query.edns, EDE_PROHIBITED)
        return resolve(snapshot, query.qname, query.qtype)
