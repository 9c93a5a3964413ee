"""The live serving state: one frozen ``ServingState`` behind one reference.

Every query reads ``StateHolder.current`` once and uses that object to the end, so a
reload that swaps the reference mid-query can never hand it half an old and half a new
zone, nor a health view that disagrees with itself. ``publish()`` is the only place
live state is replaced; it runs on the event-loop thread only. Nothing here parses or
probes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .health import EMPTY_HEALTH, HealthView
from .overrides import EMPTY_OVERRIDES, Overrides
from .snapshot import EMPTY, Snapshot


@dataclass(frozen=True, slots=True)
class ServingState:
    snapshot: Snapshot
    health: HealthView
    overrides: Overrides  # operator drains and temporary weights
    generation: int


class StateHolder:
    def __init__(self, snapshot: Snapshot = EMPTY) -> None:
        self.current = ServingState(snapshot, EMPTY_HEALTH, EMPTY_OVERRIDES, 0)

    def publish(
        self, *, snapshot: Snapshot | None = None, health: HealthView | None = None,
        overrides: Overrides | None = None,
    ) -> ServingState:
        old = self.current  # `is None`, not `or`: an empty view is falsy-looking but meant
        self.current = ServingState(
            old.snapshot if snapshot is None else snapshot,
            old.health if health is None else health,
            old.overrides if overrides is None else overrides,
            old.generation + 1,
        )
        return self.current
