"""The live serving state: one frozen ``ServingState`` behind one reference.

Every query reads ``StateHolder.current`` once and uses that object to the end, so a
reload that swaps the reference mid-query can never hand it half an old and half a new
zone, nor a health view that disagrees with itself. ``publish()`` is the only place
live state is replaced; it runs on the event-loop thread only. Nothing here parses or
probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from authdns.engine.cache import FastCache
from authdns.health.monitor import EMPTY_HEALTH, HealthView
from authdns.balancing.overrides import EMPTY_OVERRIDES, Overrides
from authdns.zones.snapshot import EMPTY, Snapshot


@dataclass(frozen=True, slots=True)
class ServingState:
    snapshot: Snapshot
    health: HealthView
    overrides: Overrides  # operator drains and temporary weights
    generation: int
    cache: FastCache  # precompiled responses for this snapshot (engine/cache.py)


class StateHolder:
    def __init__(self, snapshot: Snapshot = EMPTY) -> None:
        self.current = ServingState(snapshot, EMPTY_HEALTH, EMPTY_OVERRIDES, 0, FastCache())
        # Called with (old, new) after each publish: the worker pool passes new state on
        # to the worker processes (serve/workers.py). Same thread, so in publish order.
        self.listeners: list[Callable[[ServingState, ServingState], None]] = []

    def publish(
        self, *, snapshot: Snapshot | None = None, health: HealthView | None = None,
        overrides: Overrides | None = None,
    ) -> ServingState:
        old = self.current  # `is None`, not `or`: an empty view is falsy-looking but meant
        cache = old.cache
        if snapshot is not None and snapshot is not old.snapshot:
            # Keep the precompiled answers of the zones this snapshot did not change. Health
            # and drains need no invalidation: balanced entries are ordered per query.
            cache = cache.carry({origin for origin, zone in snapshot.zones.items()
                                 if old.snapshot.zones.get(origin) is zone})
        self.current = ServingState(
            old.snapshot if snapshot is None else snapshot,
            old.health if health is None else health,
            old.overrides if overrides is None else overrides,
            old.generation + 1,
            cache,
        )
        for listener in self.listeners:
            listener(old, self.current)
        return self.current
