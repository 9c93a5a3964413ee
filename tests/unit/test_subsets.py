"""answer: N under weights (balancing/subsets.py): answers of N distinct members whose
even split by a sender (RFC 5321 §5.1) delivers each member exactly its weight's share
of the mail over every cycle, a share above 1/N capped there and the rest shared in
proportion (checked against a water-filling written here); None where every member is
in every answer.
Checked for arbitrary weights (hypothesis) and through the Balancer with a zone."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path

from dnslib import QTYPE
from hypothesis import given
from hypothesis import strategies as st

from authdns.balancing.ordering import Balancer
from authdns.balancing.overrides import EMPTY_OVERRIDES
from authdns.balancing.subsets import subset_cycle
from authdns.base import names
from authdns.health.monitor import EMPTY_HEALTH
from support import load_text


def capped_shares(weights: list[int], size: int) -> list[Fraction]:
    """The shares a sender's even split can get at most: proportional to the weights,
    each capped at 1/N, the capped mass given to the others in proportion (water-filling)."""
    shares: dict[int, Fraction] = {}
    left = list(range(len(weights)))
    mass = Fraction(1)
    while left:
        total = sum(weights[member] for member in left)
        over = [member for member in left if mass * weights[member] / total >= Fraction(1, size)]
        if not over:
            for member in left:
                shares[member] = mass * weights[member] / total
            break
        for member in over:
            shares[member] = Fraction(1, size)
        mass -= Fraction(len(over), size)
        left = [member for member in left if member not in over]
    return [shares[member] for member in range(len(weights))]


@given(weights=st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=7),
       size=st.integers(min_value=2, max_value=4))
def test_every_cycle_delivers_the_weights_capped_at_one_nth(weights: list[int], size: int) -> None:
    eligible = list(range(len(weights)))
    cycle = subset_cycle(tuple(weights), eligible, size)
    assert (cycle is not None) == (len(weights) > size)
    if cycle is None:
        return
    delivered: Counter[int] = Counter()
    turns = 2 * cycle.period  # two cycles: the second repeats the first
    for turn in range(turns):
        chosen = cycle.members_at(turn)
        assert len(chosen) == size == len(set(chosen))
        for member in chosen:
            delivered[member] += Fraction(1, size)
    assert [delivered[member] / turns for member in eligible] == capped_shares(weights, size)


def weighted_pool(tmp_path: Path, weights: tuple[int, ...]):
    """The MX RRset ``pool.w.test`` weighted as given, with answer: 2."""
    members = "".join(f"        - {{preference: 10, exchange: mx{n}, weight: {w}}}\n" for n, w in enumerate(weights, 1))
    hosts = "".join(f"  mx{n}: {{A: 192.0.2.{10 + n}}}\n" for n in range(1, len(weights) + 1))
    _, zone, problems = load_text(tmp_path, "w.test", 'records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n  pool:\n'
                                  "    MX:\n      ttl: 60\n      policy: weighted\n      answer: 2\n      records:\n"
                                  + members + hosts)
    assert zone is not None, problems
    return zone.nodes[names.from_text("pool.w.test.")].rrsets[QTYPE.MX], problems


def test_the_balancer_answers_subsets_that_deliver_the_weights(tmp_path: Path) -> None:
    """4:3:2:1 with answer: 2 over the query path's planning: each answer 2 members, and
    a sender's even split gives 40/30/20/10 over every cycle of 10 answers."""
    rrset, problems = weighted_pool(tmp_path, (4, 3, 2, 1))
    assert not problems, problems
    balancer = Balancer()
    delivered: Counter[int] = Counter()
    for _ in range(30):
        order = balancer.plan(rrset, EMPTY_HEALTH, EMPTY_OVERRIDES).order
        assert len(order) == 2
        for index in order:
            delivered[index] += Fraction(1, 2)
    assert [delivered[index] / 30 for index in range(4)] == [Fraction(4, 10), Fraction(3, 10), Fraction(2, 10),
                                                              Fraction(1, 10)]


def test_explain_says_how_often_a_member_is_answered(tmp_path: Path) -> None:
    """explain/status reasons under subsets: the share of answers each member is in, not
    a ranking cut; a capped member (3:1:1 with answer: 2) is in every answer and says so."""
    rrset, _ = weighted_pool(tmp_path, (3, 1, 1))
    reasons = {member.text: member.reason for member in Balancer().peek(rrset, EMPTY_HEALTH, EMPTY_OVERRIDES).members}
    assert reasons["mx1.w.test."].startswith("in this answer; in 100 % of answers") and "capped" in reasons["mx1.w.test."]
    assert sorted(reason.split(";")[1] for text, reason in reasons.items() if text != "mx1.w.test.") == \
        [" in 50 % of answers, so a sender's even split among answer: 2 gives it its weight's share"] * 2
    assert not any("cut by answer" in reason for reason in reasons.values())
