"""Answers of N members that deliver the weights, for ``policy: weighted`` with ``answer: N``.

A sender picks evenly among the equal-preference members an answer gives it (RFC 5321
§5.1), so member i receives its configured share wᵢ/W of the mail exactly when it is in
a fraction N·wᵢ/W of the answers. Systematic sampling gives that over a cycle of W
answers: the members lie on a line of length N·W, member i on N·wᵢ consecutive points;
answer k takes the members at the N points k, k+W, …, k+(N−1)·W. Each member is hit
exactly N·wᵢ times per cycle, and never twice in one answer as long as N·wᵢ ≤ W. Where
some N·wᵢ > W no answer of N members can deliver that share (``check`` warns, zone.py)
and the caller keeps its smooth order instead.

The cycle is walked with a stride coprime with W, so consecutive answers differ (the
points of one member are consecutive on the line); the first position rotates among
the N chosen. Pure: no state, no I/O; the rotor's turn is the caller's.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import reduce
from itertools import accumulate
from math import gcd, lcm

GOLDEN = 0.6180339887  # a stride near W/φ spreads a member's consecutive points apart


@dataclass(frozen=True, slots=True)
class SubsetCycle:
    positions: tuple[int, ...]  # the group positions of the eligible members, in zone order
    bounds: tuple[int, ...]  # where each member's points end on the line (cumulative N·w)
    width: int  # W: answers in one cycle (weights reduced by their gcd)
    size: int  # N: members per answer
    stride: int  # coprime with W: the order the cycle's answers are given in

    @property
    def period(self) -> int:
        """Turns after which the answers repeat (the cycle and the first-position rotation)."""
        return lcm(self.width, self.size)

    def members_at(self, turn: int) -> list[int]:
        """The group positions of the N members of answer ``turn``, first one first."""
        k = (turn * self.stride) % self.width
        chosen = [self.positions[bisect_right(self.bounds, k + j * self.width)] for j in range(self.size)]
        shift = turn % self.size
        return chosen[shift:] + chosen[:shift]


def subset_cycle(weights: tuple[int, ...], eligible: list[int], size: int | None) -> SubsetCycle | None:
    """The cycle for these effective weights, or None when it does not apply: fewer than
    two members per answer, every eligible member in every answer anyway, or a weight
    no answer of ``size`` members can deliver (N·wᵢ > W)."""
    if size is None or size < 2 or len(eligible) <= size:
        return None
    reduced = [weights[position] for position in eligible]
    common = reduce(gcd, reduced)
    reduced = [weight // common for weight in reduced]
    width = sum(reduced)
    if max(reduced) * size > width:
        return None
    return SubsetCycle(tuple(eligible), tuple(accumulate(weight * size for weight in reduced)), width, size,
                       _stride(width))


def _stride(width: int) -> int:
    stride = max(1, round(width * GOLDEN))
    while gcd(stride, width) != 1:
        stride += 1
    return stride
