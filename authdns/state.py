"""The live serving state: one frozen ``ServingState`` behind one reference.

Every query reads ``StateHolder.current`` once and uses that object to the end, so a
reload that swaps the reference mid-query can never hand it half an old and half a new
zone. ``publish()`` is the only place live state is replaced; it runs on the event-loop
thread only. Nothing here parses or probes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .snapshot import EMPTY, Snapshot


@dataclass(frozen=True, slots=True)
class ServingState:
    snapshot: Snapshot
    generation: int


class StateHolder:
    def __init__(self, snapshot: Snapshot = EMPTY) -> None:
        self.current = ServingState(snapshot, 0)

    def publish(self, *, snapshot: Snapshot | None = None) -> ServingState:
        old = self.current
        self.current = ServingState(old.snapshot if snapshot is None else snapshot, old.generation + 1)
        return self.current
