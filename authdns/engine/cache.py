"""``FastCache``: precompiled responses by question key (``wire.question_key``), bounded.

A *static* entry is one response (flags, counts, the bytes after the question). A
*dynamic* entry holds the engine's answer for a question with balanced RRsets, its
``orders.Orders`` for the current health view and overrides, and the variant rendered
for each of their indices; each query advances the Orders (rotors as they are now) and
splices the variant for the index it returns, rendering it once on first use. So health
and drain changes need no invalidation, and balancing keeps its exact shares.

Entries are grouped by the zone they come from, so a reload keeps the entries of every
zone it did not change (``carry``). An answer that touched several zones (a CNAME into
another zone, an address from another zone in additional) or none (REFUSED) is dropped
on any zone change. Negative entries (NXDOMAIN, REFUSED) have their own, smaller bound:
a flood of random names fills it and then stays on the slow path, memory bounded.
Decides nothing about what is cacheable (the responder does).
"""

from __future__ import annotations

from typing import Iterable

from authdns.answering.answer import Answer
from authdns.base.names import Name
from authdns.balancing.orders import Orders
from authdns.answering.query import Query

DEFAULT_LIMIT = 200_000  # entries in all
DEFAULT_NEGATIVE_LIMIT = 20_000  # NXDOMAIN and REFUSED entries
# Bytes of rendered variants one balanced entry keeps (about a thousand small answers: a
# round robin of that many members); past it they start over (``Dynamic.keep``)
VARIANT_BYTES = 256 * 1024
CROSS = b"\xff"  # bucket of entries that touched several zones or none


class Static:
    """One rendered response; ``key`` is its ``Answer.key`` (kind and subject, for RRL
    and the query log), so a cache hit knows what it is without reading the bytes."""

    __slots__ = ("flags", "counts", "body", "key")

    def __init__(self, flags: int, counts: bytes, body: bytes, key: bytes) -> None:
        self.flags, self.counts, self.body, self.key = flags, counts, body, key


class Dynamic:
    """A balanced answer: the engine's result, the query it was first asked as (for
    rendering a new variant), its Orders (None until first asked), and the variant
    rendered for each index of those Orders so far; ``key`` as in ``Static``.

    Renderings are also kept by their ``Orders.signature_at`` (``rendered``), which
    outlives the Orders: a new health view makes new Orders, and the orders it shares
    with the last one (most of them, when one member of hundreds flips) are not
    rendered again. Bounded by VARIANT_BYTES."""

    __slots__ = ("answer", "query", "orders", "variants", "key", "rendered", "size")

    def __init__(self, answer: Answer, query: Query, key: bytes) -> None:
        self.answer, self.query, self.key = answer, query, key
        self.orders: Orders | None = None
        self.variants: dict[int, Static] = {}  # by Orders index
        self.rendered: dict[tuple, Static] = {}  # by Orders signature
        self.size = 0  # bytes of the bodies in ``rendered``

    def keep(self, signature: tuple, variant: Static) -> None:
        """Keep a rendering by its signature; past VARIANT_BYTES, start over (the
        indexes' variants too: they hold the same renderings)."""
        if self.size + len(variant.body) > VARIANT_BYTES:
            self.rendered.clear()
            self.variants.clear()
            self.size = 0
        self.rendered[signature] = variant
        self.size += len(variant.body)


class FastCache:
    __slots__ = ("entries", "buckets", "negatives", "limit", "negative_limit")

    def __init__(self, limit: int = DEFAULT_LIMIT, negative_limit: int = DEFAULT_NEGATIVE_LIMIT) -> None:
        self.entries: dict[bytes, Static | Dynamic] = {}
        self.buckets: dict[bytes, list[bytes]] = {}
        self.negatives: set[bytes] = set()
        self.limit, self.negative_limit = limit, negative_limit

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: bytes, entry: Static | Dynamic, zones: Iterable[Name], negative: bool) -> bool:
        """Store unless full (new keys then stay on the slow path); False when not stored."""
        if len(self.entries) >= self.limit or (negative and len(self.negatives) >= self.negative_limit):
            return False
        if key in self.entries:
            return True
        touched = set(zones)
        bucket = next(iter(touched)) if len(touched) == 1 else CROSS
        self.entries[key] = entry
        self.buckets.setdefault(bucket, []).append(key)
        if negative:
            self.negatives.add(key)
        return True

    def carry(self, unchanged: set[Name]) -> "FastCache":
        """A cache for a new snapshot: the entries of the zones it did not change."""
        fresh = FastCache(self.limit, self.negative_limit)
        for bucket, keys in self.buckets.items():
            if bucket in unchanged:
                fresh.buckets[bucket] = keys
                for key in keys:
                    fresh.entries[key] = self.entries[key]
                    if key in self.negatives:
                        fresh.negatives.add(key)
        return fresh
