"""What the server counted, as one read model: the field lists and the one merge.

- ``QueryCounters``: a responder's live counters (answers by transport and rcode,
  drops, TC, internal errors, QTYPEs, the sampled latency histogram, RRL actions). The
  query path increments its fields in place; nothing else writes them.
- ``MemberCounters``: per balanced member (owner, type, member text), since start:
  first places, answers, the mail a conforming sender delivers to it from those answers
  (``split``, ``mail``), when it was last handed out and with which TTL.
- ``Totals``: one process's counters read at one moment (``Answerer.totals``), or the sum
  over worker processes (``add``): what ``status``, ``drain``, ``/metrics`` and the
  status page read. Picklable: workers send it to their supervisor.
- ``Observation``: everything one scrape or status-page refresh shows.

Holds numbers only: counts nothing itself, imports nothing it reads from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

# Upper bounds (seconds) of the latency histogram's buckets; one more for anything slower.
LATENCY_BOUNDS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
VIA_SLOTS = 16  # answers: index Via * VIA_SLOTS + rcode (header rcodes are 4 bits)


@dataclass(slots=True)
class QueryCounters:
    # answers by transport and rcode: a flat list (the hot path pays one list
    # increment, not a tuple hash), index Via * VIA_SLOTS + rcode.
    answers: list[int] = field(default_factory=lambda: [0] * (2 * VIA_SLOTS))
    dropped: int = 0
    truncated: int = 0
    internal_errors: int = 0
    types: dict[int, int] = field(default_factory=dict)  # queries by QTYPE (those with a readable question)
    # Time from packet to answer bytes for one query in LATENCY_SAMPLE (engine/responder.py):
    # counts per bucket of LATENCY_BOUNDS.
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    latency_sum: float = 0.0  # seconds, over the timed queries
    rrl_dropped: int = 0  # UDP answers response rate limiting dropped (serve/rrl.py)
    rrl_slipped: int = 0  # ... and sent truncated instead
    tcp_closed: dict[str, int] = field(default_factory=dict)  # TCP connections the server closed, by reason (serve/tcp.py)

    def copy(self) -> QueryCounters:
        return QueryCounters(list(self.answers), self.dropped, self.truncated, self.internal_errors, dict(self.types),
                             list(self.latency), self.latency_sum, self.rrl_dropped, self.rrl_slipped,
                             dict(self.tcp_closed))

    def add(self, other: QueryCounters) -> None:
        self.answers = [a + b for a, b in zip(self.answers, other.answers)]
        self.dropped += other.dropped
        self.truncated += other.truncated
        self.internal_errors += other.internal_errors
        for qtype, count in other.types.items():
            self.types[qtype] = self.types.get(qtype, 0) + count
        self.latency = [a + b for a, b in zip(self.latency, other.latency)]
        self.latency_sum += other.latency_sum
        self.rrl_dropped += other.rrl_dropped
        self.rrl_slipped += other.rrl_slipped
        for reason, count in other.tcp_closed.items():
            self.tcp_closed[reason] = self.tcp_closed.get(reason, 0) + count

    @property
    def received(self) -> int:
        """Queries answered or dropped."""
        return sum(self.answers) + self.dropped


@dataclass(slots=True)
class MemberCounters:
    """One balanced member since start (kept across reloads while it is still served)."""

    first: int = 0  # answers in which it came first in its preference group
    given: int = 0  # answers that carried it
    last_given: float = 0.0  # wall time of the last answer that carried it
    # the latest time a resolver may still hold an answer carrying it: the max over those
    # answers of their time plus the TTL they carried (short while unsettled, so the last
    # answer's own is not enough: an earlier one at the full TTL can outlive it)
    expires: float = 0.0
    # k -> answers in which it was one of the k members a sender splits its group's mail
    # between (ordering.Plan.split): whole counts, so sums over workers and the fast
    # path's replays stay exact.
    split: dict[int, int] = field(default_factory=dict)

    @property
    def mail(self) -> Fraction:
        """Answers' worth of its group's mail a conforming sender delivers to it: 1/k of
        each answer in which it was one of k equal-preference members (RFC 5321 §5.1: a
        sender picks uniformly among them)."""
        return sum((Fraction(count, k) for k, count in self.split.items()), Fraction(0))

    def add(self, other: MemberCounters) -> None:
        self.first += other.first
        self.given += other.given
        for k, count in other.split.items():
            self.split[k] = self.split.get(k, 0) + count
        self.last_given = max(self.last_given, other.last_given)
        self.expires = max(self.expires, other.expires)

    def copy(self) -> MemberCounters:
        return MemberCounters(self.first, self.given, self.last_given, self.expires, dict(self.split))


@dataclass(slots=True)
class Totals:
    """Counters of one process at one moment, or summed over several (``add``)."""

    queries: QueryCounters = field(default_factory=QueryCounters)
    fast_hits: int = 0  # answers spliced from the response cache
    fail_open_answers: int = 0  # balanced answers given with every member down
    members: dict[Any, MemberCounters] = field(default_factory=dict)  # member key -> its counters

    def add(self, other: Totals) -> None:
        self.queries.add(other.queries)
        self.fast_hits += other.fast_hits
        self.fail_open_answers += other.fail_open_answers
        for key, counters in other.members.items():
            mine = self.members.get(key)
            if mine is None:
                self.members[key] = counters.copy()
            else:
                mine.add(counters)


@dataclass(frozen=True)
class Observation:
    """Everything one scrape or one page refresh shows, read on the event loop."""

    time: float
    totals: Totals
    status: dict[str, Any]  # the control channel's `status` reply (ops/control.py), built from ``totals``
    zones_loaded_at: dict[str, float]  # zone origin (text) -> wall time it was last (re)loaded
    reloads: int
    failed_reloads: int
    probes: list[tuple[str, int, int, int, float | None]]  # host, port, probes, failures, rtt
