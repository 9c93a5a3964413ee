"""Which answers of at most N members deliver given shares of the mail.

A sender picks evenly among the equal-preference members an answer gives it (RFC 5321
§5.1): an answer of k members sends 1/k of its mail to each. So no answer of N members
gives one member more than 1/N, and a member whose share is above 1/N can only get it
from answers with fewer members. ``answer_levels`` finds a mixture of answer sizes that
delivers every share exactly, with as many answers as possible at the largest size
(the most fallbacks in each cached answer):

1. Among the members left, in answers of k = min(N, members) members: the shares each
   gets at most, proportional to the targets, capped at 1/k (water-filling: a capped
   member is in every such answer, the others share the rest in proportion).
2. Use those answers for as large a fraction β of the mail as keeps every target
   covered (β = min target/capped share): the uncapped members are then served in full.
3. What is left of the capped members' targets is served the same way with fewer
   members per answer; each step serves at least one member in full, and one member
   alone can always be served, so it ends.

3:1:1 with N = 2: 80 % of answers are mx1 and one of mx2/mx3, 20 % are mx1 alone; a
sender's even split delivers 60/20/20. Pure arithmetic (exact fractions), no state:
``check`` reports the sizes (zone.py) and ``balancing/subsets.py`` builds the cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Level:
    """A fraction of the answers, each of ``size`` members."""

    fraction: Fraction  # of all answers
    size: int
    inclusion: dict[int, Fraction]  # member -> fraction of this level's answers it is in (≤ 1; sums to size)


def answer_levels(weights: dict[int, int], size: int) -> list[Level]:
    """The answer sizes, largest first, whose even split gives each member (a key of
    ``weights``, weight > 0) exactly weights[m] / sum(weights) of the mail."""
    total = sum(weights.values())
    targets = {member: Fraction(weight, total) for member, weight in weights.items() if weight > 0}
    levels: list[Level] = []
    mass = Fraction(1)  # the part of the mail still to serve
    while targets:
        members = min(size, len(targets))
        capped = _capped_shares(targets, members)
        taken = min(targets[member] / capped[member] for member in targets)  # β ≤ 1
        levels.append(Level(mass * taken, members, {member: members * capped[member] for member in targets}))
        if taken == 1:
            break
        targets = {member: (share - taken * capped[member]) / (1 - taken) for member, share in targets.items()
                   if share != taken * capped[member]}
        mass *= 1 - taken
    return levels


def _capped_shares(targets: dict[int, Fraction], size: int) -> dict[int, Fraction]:
    """Each member's share of the mail from answers of ``size`` members: proportional to
    its target, at most 1/size (then it is in every answer), the rest in proportion."""
    cap = Fraction(1, size)
    capped: set[int] = set()
    while True:
        rest = [member for member in targets if member not in capped]
        if not rest:  # as many members as places, all at 1/size: each in every answer
            return {member: cap for member in targets}
        scale = (1 - cap * len(capped)) / sum(targets[member] for member in rest)
        over = {member for member in rest if targets[member] * scale >= cap}
        if not over:
            return {member: cap if member in capped else targets[member] * scale for member in targets}
        capped |= over
