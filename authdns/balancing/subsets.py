"""Answers that deliver the weights, for ``policy: weighted`` with ``answer: N``.

A sender picks evenly among the equal-preference members an answer gives it (RFC 5321
§5.1), so the mix of answers decides the mail's shares: ``base/answershares.py`` finds
answer sizes (N where it can, fewer where a weight is above 1/N) and how often each
member is in the answers of each size. This module turns that into a cycle of whole
answers: the least number of answers, W, in which every count is whole, each size's
answers filled by systematic sampling — that size's members lie on a line of
``size × count`` points, member i on ``count × inclusion(i)`` consecutive points; the
j-th answer of the size takes the points j, j+count, …, j+(size−1)·count. Each member
is hit exactly its count, never twice in one answer (an inclusion is at most 1).

3:1:1 with N = 2: W = 5, four answers {mx1, mx2}, {mx1, mx2}, {mx1, mx3}, {mx1, mx3} and
one {mx1}; a sender's even split delivers 3/5, 1/5, 1/5. Degraded members and temporary
weights change the effective weights, so the sizes can change at runtime; ``check``
warns where the zone's weights need answers of a single member (zone.py).

The cycle's answers are given in a spread-out order (a member's points are consecutive
on the line, so neighbouring answers would often be alike; sizes mix too); the first
position rotates among the chosen. Over any W consecutive turns each member's share is
exact, so a turn counter that carries on across weight changes stays exact. Pure: no
state, no I/O; the rotor's turn is the caller's.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate
from math import gcd, lcm

from authdns.base.answershares import answer_levels

GOLDEN = 0.6180339887  # k·φ mod 1 spreads k = 0..W-1 apart (a low-discrepancy order)
SPREAD_LIMIT = 4096  # above this many answers per cycle, a stride coprime with W spreads them instead


@dataclass(frozen=True, slots=True)
class _Size:
    """The cycle's answers of one size."""

    size: int
    count: int  # answers of this size per cycle
    positions: tuple[int, ...]  # group positions sampled, in zone order
    bounds: tuple[int, ...]  # where each one's points end on the line (cumulative count × inclusion)

    def members(self, answer: int) -> list[int]:
        return [self.positions[bisect_right(self.bounds, answer + slot * self.count)] for slot in range(self.size)]


@dataclass(frozen=True, slots=True)
class SubsetCycle:
    sizes: tuple[_Size, ...]  # largest first
    starts: tuple[int, ...]  # where each size's answers end in the cycle (cumulative counts)
    width: int  # W: answers in one cycle
    order: tuple[int, ...]  # the cycle's answers in the order given (empty: by stride)
    stride: int
    shares: dict[int, Fraction]  # group position -> fraction of the answers it is in

    @property
    def size(self) -> int:
        """The most members an answer has (N, or fewer when the group has fewer)."""
        return self.sizes[0].size

    @property
    def period(self) -> int:
        """Turns after which the answers repeat (the cycle and the first-position rotation)."""
        return lcm(self.width, *(size.size for size in self.sizes))

    def answers_with(self, position: int) -> float:
        """The fraction of answers member ``position`` is in (``explain`` says it)."""
        return float(self.shares.get(position, 0))

    def alone(self) -> float:
        """The fraction of answers with a single member: no fallback while cached."""
        return sum(size.count for size in self.sizes if size.size == 1) / self.width

    def members_at(self, turn: int) -> list[int]:
        """The group positions of the members of answer ``turn``, first one first."""
        position = turn % self.width
        k = self.order[position] if self.order else (position * self.stride) % self.width
        level = bisect_right(self.starts, k)
        chosen = self.sizes[level].members(k - (self.starts[level - 1] if level else 0))
        shift = turn % len(chosen)
        return chosen[shift:] + chosen[:shift]


def subset_cycle(weights: tuple[int, ...], eligible: list[int], size: int | None) -> SubsetCycle | None:
    """The cycle for these effective weights, or None when it does not apply: fewer than
    two members per answer, or every eligible member in every answer anyway."""
    if size is None or size < 2 or len(eligible) <= size:
        return None
    levels = answer_levels({position: weights[position] for position in eligible}, size)
    # W: the least number of answers in which every size's count and every member's count is whole.
    width = lcm(*(fraction.denominator for level in levels
                  for fraction in (level.fraction, *(level.fraction * share for share in level.inclusion.values()))))
    sizes = []
    for level in levels:
        count = int(level.fraction * width)
        positions = tuple(sorted(level.inclusion))
        sizes.append(_Size(level.size, count, positions,
                           tuple(accumulate(int(count * level.inclusion[position]) for position in positions))))
    shares = {position: sum((level.fraction * level.inclusion.get(position, 0) for level in levels), Fraction(0))
              for position in eligible}
    order = tuple(sorted(range(width), key=lambda k: (k * GOLDEN) % 1)) if width <= SPREAD_LIMIT else ()
    return SubsetCycle(tuple(sizes), tuple(accumulate(size.count for size in sizes)), width, order,
                       1 if order else _stride(width), shares)


def _stride(width: int) -> int:
    stride = max(1, round(width * GOLDEN))
    while gcd(stride, width) != 1:
        stride += 1
    return stride
