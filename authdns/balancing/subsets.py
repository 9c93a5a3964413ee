"""Answers of N members that deliver the weights, for ``policy: weighted`` with ``answer: N``.

A sender picks evenly among the equal-preference members an answer gives it (RFC 5321
§5.1), so member i receives its configured share wᵢ/W of the mail exactly when it is in
a fraction N·wᵢ/W of the answers. Systematic sampling gives that over a cycle of W
answers: the members lie on a line of length N·W, member i on N·wᵢ consecutive points;
answer k takes the members at the N points k, k+W, …, k+(N−1)·W. Each member is hit
exactly N·wᵢ times per cycle, and never twice in one answer as long as N·wᵢ ≤ W.

A weight no answer of N members can deliver (N·wᵢ ≥ W: more than 1/N of the mail) is
capped: that member is in every answer, and the other slots are sampled the same way
among the others, which keep their proportions (``check`` warns where the zone's own
weights ask for more than 1/N, zone.py). Degraded members and temporary weights change
the effective weights, so the cap can come and go at runtime.

The cycle's answers are given in a spread-out order (a member's points are consecutive
on the line, so answer k and k+1 would often be alike); the first position rotates
among the N chosen. Over any W consecutive turns each member's share is exact, so a
turn counter that carries on across weight changes stays exact. Pure: no state, no
I/O; the rotor's turn is the caller's.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import reduce
from itertools import accumulate
from math import gcd, lcm

GOLDEN = 0.6180339887  # k·φ mod 1 spreads k = 0..W-1 apart (a low-discrepancy order)
SPREAD_LIMIT = 4096  # above this many answers per cycle, a stride coprime with W spreads them instead


@dataclass(frozen=True, slots=True)
class SubsetCycle:
    always: tuple[int, ...]  # group positions in every answer (weights capped at 1/N)
    positions: tuple[int, ...]  # the others' group positions, sampled, in zone order
    bounds: tuple[int, ...]  # where each sampled member's points end on the line (cumulative slots·w)
    width: int  # W: answers in one cycle (the sampled weights reduced by their gcd)
    slots: int  # members sampled per answer (N minus the capped ones)
    order: tuple[int, ...]  # the cycle's answers in the order given (empty: by stride)
    stride: int

    @property
    def size(self) -> int:
        return len(self.always) + self.slots

    @property
    def period(self) -> int:
        """Turns after which the answers repeat (the cycle and the first-position rotation)."""
        return lcm(self.width, self.size)

    def answers_with(self, position: int) -> float:
        """The fraction of answers member ``position`` is in (``explain`` says it)."""
        if position in self.always:
            return 1.0
        index = self.positions.index(position)
        return (self.bounds[index] - (self.bounds[index - 1] if index else 0)) / self.width

    def members_at(self, turn: int) -> list[int]:
        """The group positions of the N members of answer ``turn``, first one first."""
        position = turn % self.width
        k = self.order[position] if self.order else (position * self.stride) % self.width
        chosen = list(self.always)
        chosen += [self.positions[bisect_right(self.bounds, k + j * self.width)] for j in range(self.slots)]
        shift = turn % len(chosen)
        return chosen[shift:] + chosen[:shift]


def subset_cycle(weights: tuple[int, ...], eligible: list[int], size: int | None) -> SubsetCycle | None:
    """The cycle for these effective weights, or None when it does not apply: fewer than
    two members per answer, or every eligible member in every answer anyway."""
    if size is None or size < 2 or len(eligible) <= size:
        return None
    always: list[int] = []
    rest = list(eligible)
    slots = size
    while slots:
        total = sum(weights[position] for position in rest)
        capped = [position for position in rest if weights[position] * slots >= total]
        if not capped:
            break
        always += capped[:slots]  # at most the slots left (equal weights at the cap)
        rest = [position for position in rest if position not in always]
        slots = size - len(always)
    if not slots:
        return SubsetCycle(tuple(always), (), (), 1, 0, (), 1)
    reduced = [weights[position] for position in rest]
    common = reduce(gcd, reduced)
    reduced = [weight // common for weight in reduced]
    width = sum(reduced)
    order = tuple(sorted(range(width), key=lambda k: (k * GOLDEN) % 1)) if width <= SPREAD_LIMIT else ()
    return SubsetCycle(tuple(always), tuple(rest), tuple(accumulate(weight * slots for weight in reduced)), width,
                       slots, order, 1 if order else _stride(width))


def _stride(width: int) -> int:
    stride = max(1, round(width * GOLDEN))
    while gcd(stride, width) != 1:
        stride += 1
    return stride
