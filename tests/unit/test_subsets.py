"""answer: N under weights (balancing/subsets.py, base/answershares.py): answers of at
most N distinct members whose even split by a sender (RFC 5321 §5.1) delivers each member
exactly its weight's share of the mail over every cycle — answers of N members wherever
no weight is above 1/N, smaller ones (some of a member alone) only where one is; None
where every member is in every answer.
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


def even_split(answers: list[list[int]]) -> Counter[int]:
    """What senders that split each answer evenly among its members deliver, per member,
    as a fraction of all the mail (one unit of mail per answer)."""
    delivered: Counter[int] = Counter()
    for chosen in answers:
        for member in chosen:
            delivered[member] += Fraction(1, len(chosen) * len(answers))
    return delivered


@given(weights=st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=7),
       size=st.integers(min_value=2, max_value=4))
def test_every_cycle_delivers_the_weights_exactly(weights: list[int], size: int) -> None:
    eligible = list(range(len(weights)))
    cycle = subset_cycle(tuple(weights), eligible, size)
    assert (cycle is not None) == (len(weights) > size)
    if cycle is None:
        return
    answers = [cycle.members_at(turn) for turn in range(2 * cycle.period)]  # two cycles: the second repeats
    assert all(1 <= len(chosen) <= size and len(chosen) == len(set(chosen)) for chosen in answers)
    delivered = even_split(answers)
    total = sum(weights)
    assert [delivered[member] for member in eligible] == [Fraction(weight, total) for weight in weights]
    if max(weights) * size <= total:  # every share reachable with N members: every answer has N
        assert {len(chosen) for chosen in answers} == {size}
    else:  # a share above 1/N needs answers of fewer members (1:1:3:3 with N = 3: some of 2)
        assert min(len(chosen) for chosen in answers) < size
    assert cycle.alone() == sum(1 for chosen in answers if len(chosen) == 1) / len(answers)


def weighted_pool(tmp_path: Path, weights: tuple[int, ...], promote: bool = False):
    """The MX RRset ``pool.w.test`` weighted as given, with answer: 2 (and promote)."""
    members = "".join(f"        - {{preference: 10, exchange: mx{n}, weight: {w}}}\n" for n, w in enumerate(weights, 1))
    hosts = "".join(f"  mx{n}: {{A: 192.0.2.{10 + n}}}\n" for n in range(1, len(weights) + 1))
    _, zone, problems = load_text(tmp_path, "w.test", 'records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n  pool:\n'
                                  "    MX:\n      ttl: 60\n      policy: weighted\n      answer: 2\n"
                                  + ("      promote: true\n" if promote else "") + "      records:\n"
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


def test_the_balancer_delivers_a_weight_above_one_nth(tmp_path: Path) -> None:
    """3:1:1 with answer: 2 (60 % is above 1/2): four answers in five are mx1 and one of
    the others, one is mx1 alone, and a sender's even split gives 60/20/20."""
    rrset, _ = weighted_pool(tmp_path, (3, 1, 1))
    balancer = Balancer()
    answers = [balancer.plan(rrset, EMPTY_HEALTH, EMPTY_OVERRIDES).order for _ in range(20)]
    assert Counter(len(order) for order in answers) == {2: 16, 1: 4}
    assert all(0 in order for order in answers)  # mx1 in every answer
    delivered = even_split(answers)
    assert [delivered[index] for index in range(3)] == [Fraction(3, 5), Fraction(1, 5), Fraction(1, 5)]


def test_explain_says_how_often_a_member_is_answered(tmp_path: Path) -> None:
    """explain/status reasons under subsets: the share of answers each member is in, not
    a ranking cut; a member above 1/N (3:1:1 with answer: 2) is in every answer and says
    how many carry it alone."""
    rrset, _ = weighted_pool(tmp_path, (3, 1, 1))
    reasons = {member.text: member.reason for member in Balancer().peek(rrset, EMPTY_HEALTH, EMPTY_OVERRIDES).members}
    first = reasons["mx1.w.test."]
    assert first.startswith("in this answer of 2; in 100 % of answers"), first
    assert first.endswith("above 1/2 of the mail, so 20 % of answers carry it alone"), first
    assert sorted(reason.split(";")[1] for text, reason in reasons.items() if text != "mx1.w.test.") == \
        [" in 40 % of answers, so a sender's even split (answers of at most 2) gives it its weight's share"] * 2
    assert not any("cut by answer" in reason for reason in reasons.values())


def test_promote_keeps_n_members_in_every_answer(tmp_path: Path) -> None:
    """Under promote the sender takes the promoted member first (RFC 5321 §5.1: the
    lowest preference), so its smooth weighted first place delivers the weights and no
    answer needs to be a member alone: 3:1:1 with answer: 2 and promote is two members
    in every answer, the promoted one 60/20/20."""
    rrset, problems = weighted_pool(tmp_path, (3, 1, 1), promote=True)
    assert not problems, problems
    balancer = Balancer()
    plans = [balancer.plan(rrset, EMPTY_HEALTH, EMPTY_OVERRIDES) for _ in range(20)]
    assert all(len(plan.order) == 2 and plan.promoted == {plan.order[0]} for plan in plans)
    assert Counter(plan.order[0] for plan in plans) == {0: 12, 1: 4, 2: 4}
