"""The Balancer's rules, on RRsets loaded from YAML and health views built as values
(the socket-level share tests are in tests/integration/test_balancing.py).

Checks: smooth weighted round robin gives exact shares over every cycle for any weights
(hypothesis) and spreads them; round robin rotates over the eligible members; down
members leave and a weighted RRset redistributes their share in proportion; standby
only when every weighted member is down; an MX group with no usable member leaves the
answer; everything down fails open (and is counted); degraded keeps a quarter share;
``weight: auto`` follows round-trip times within 1..10; ``peek`` predicts
the next answer and moves nothing; ``retain()`` keeps rotors of unchanged RRsets; each
member's target (the share of its group's mail it should get) and the mail a sender
gets from each answer (1/k of it to each of k members, the promoted MX alone).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType

from dnslib import QTYPE
from hypothesis import given, settings
from hypothesis import strategies as st

from authdns.base import names
from authdns.health.monitor import EMPTY_HEALTH, HealthView, MemberHealth, Status
from authdns.balancing.ordering import Balancer
from authdns.balancing.rotors import Rotors, SmoothWeighted
from authdns.balancing.overrides import EMPTY_OVERRIDES, Override
from support import load_text

ZONE = """
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  rr: {MX: ['10 a', '10 b', '10 c', '20 d']}
  w:
    MX:
      policy: weighted
      records:
        - {preference: 10, exchange: a, weight: 3}
        - {preference: 10, exchange: b, weight: 2}
        - {preference: 10, exchange: c, weight: 1}
        - {preference: 10, exchange: s, weight: 0}
        - '20 d'
  auto:
    MX:
      policy: weighted
      check: {kind: smtp}
      records:
        - {preference: 10, exchange: a, weight: auto}
        - {preference: 10, exchange: b, weight: auto}
  a: {A: 192.0.2.11}
  b: {A: 192.0.2.12}
  c: {A: 192.0.2.13}
  d: {A: 192.0.2.14}
  s: {A: 192.0.2.19}
"""


def load(tmp_path: Path):
    _, zone, problems = load_text(tmp_path, "o.test", ZONE)
    assert zone is not None, problems
    return zone


def rrset(zone, owner: str):
    return zone.nodes[names.from_text(f"{owner}.o.test.")].rrsets[QTYPE.MX]


def key(owner: str, member: str):
    return (names.from_text(f"{owner}.o.test."), QTYPE.MX, f"{member}.o.test.")


def health(owner: str, **statuses: Status | tuple[Status, float]) -> HealthView:
    members = {}
    for member, value in statuses.items():
        status, rtt = value if isinstance(value, tuple) else (value, 0.001)
        members[key(owner, member)] = MemberHealth(status, 0.0, rtt, None, ())
    return HealthView(MappingProxyType(members))


def order(balancer: Balancer, rrset_, view=EMPTY_HEALTH, overrides=EMPTY_OVERRIDES) -> list[str]:
    plan = balancer.plan(rrset_, view, overrides)
    return [names.to_text(names.from_dnslabel(rrset_.rdatas[i].label)).split(".")[0] for i in plan.order]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=8).filter(any))
def test_smooth_weighted_is_exact_every_cycle(weights: list[int]) -> None:
    rotor = SmoothWeighted()
    total = sum(weights)
    for _ in range(3):
        picks = Counter(rotor.pick(tuple(weights)) for _ in range(total))
        assert picks == Counter({index: weight for index, weight in enumerate(weights) if weight})


def test_smooth_weighted_spreads_picks() -> None:
    rotor = SmoothWeighted()
    picks = [rotor.pick((5, 1, 1)) for _ in range(7)]
    assert picks == [0, 0, 1, 0, 2, 0, 0]  # nginx's sequence: a a b a c a a


def test_round_robin_rotates_over_eligible(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    assert [order(balancer, rrset(zone, "rr")) for _ in range(3)] == [
        ["a", "b", "c", "d"], ["b", "c", "a", "d"], ["c", "a", "b", "d"]]
    down = health("rr", b=Status.DOWN)
    firsts = Counter(order(balancer, rrset(zone, "rr"), down)[0] for _ in range(100))
    assert firsts == {"a": 50, "c": 50}


def test_weighted_redistributes_a_down_members_share(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    firsts = Counter(order(balancer, rrset(zone, "w"))[0] for _ in range(600))
    assert firsts == {"a": 300, "b": 200, "c": 100}
    firsts = Counter(order(balancer, rrset(zone, "w"), health("w", a=Status.DOWN))[0] for _ in range(300))
    assert firsts == {"b": 200, "c": 100}, "2:1, in proportion to the remaining weights"


def test_rest_follow_heaviest_first(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    for _ in range(12):
        answer = order(balancer, rrset(zone, "w"))
        rest = [member for member in ["a", "b", "c"] if member != answer[0]]
        assert answer == [answer[0], *rest, "d"]


def test_standby_and_group_and_fail_open(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    assert "s" not in order(balancer, rrset(zone, "w"))
    weighted_down = health("w", a=Status.DOWN, b=Status.DOWN, c=Status.DOWN)
    assert order(balancer, rrset(zone, "w"), weighted_down) == ["s", "d"]
    group_down = health("w", a=Status.DOWN, b=Status.DOWN, c=Status.DOWN, s=Status.DOWN)
    assert order(balancer, rrset(zone, "w"), group_down) == ["d"], "the next preference comes first"
    all_down = health("w", a=Status.DOWN, b=Status.DOWN, c=Status.DOWN, s=Status.DOWN, d=Status.DOWN)
    plan = balancer.plan(rrset(zone, "w"), all_down, EMPTY_OVERRIDES)
    assert plan.fail_open and len(plan.order) == 5 and balancer.fail_open_answers == 1


def test_drain_is_weight_zero(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    drained = EMPTY_OVERRIDES.with_member(key("w", "a"), Override(drained=True))
    firsts = Counter(order(balancer, rrset(zone, "w"), overrides=drained)[0] for _ in range(300))
    assert firsts == {"b": 200, "c": 100}
    plan = balancer.peek(rrset(zone, "w"), EMPTY_HEALTH, drained)
    (a,) = [member for member in plan.members if member.text == "a.o.test."]
    assert not a.included and a.reason.startswith("drained")


def test_degraded_keeps_a_quarter(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    view = health("w", a=Status.DEGRADED)  # 3 → 0.75 against 2 and 1: 3 : 8 : 4 per 15
    firsts = Counter(order(balancer, rrset(zone, "w"), view)[0] for _ in range(150))
    assert firsts == {"a": 30, "b": 80, "c": 40}


def test_auto_weight_follows_rtt(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    view = health("auto", a=(Status.UP, 0.002), b=(Status.UP, 0.050))  # 10 ms floor: 10 vs 2
    plan = balancer.peek(rrset(zone, "auto"), view, EMPTY_OVERRIDES)
    assert [member.base for member in sorted(plan.members, key=lambda m: m.index)] == [10, 2]
    view = health("auto", a=(Status.UP, 0.002), b=(Status.UP, 5.0))
    plan = balancer.peek(rrset(zone, "auto"), view, EMPTY_OVERRIDES)
    assert [member.base for member in sorted(plan.members, key=lambda m: m.index)] == [10, 1], "never starved"


def test_peek_predicts_and_moves_nothing(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    for _ in range(7):
        predicted = balancer.peek(rrset(zone, "w"), EMPTY_HEALTH, EMPTY_OVERRIDES).order
        assert balancer.peek(rrset(zone, "w"), EMPTY_HEALTH, EMPTY_OVERRIDES).order == predicted
        assert balancer.plan(rrset(zone, "w"), EMPTY_HEALTH, EMPTY_OVERRIDES).order == predicted
    assert sum(counter.given for counter in balancer.counters.values()) == 7 * 4


def test_retain_keeps_unchanged_rotors(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    order(balancer, rrset(zone, "rr"))
    reloaded = load(tmp_path)  # a new Zone object with the same RRsets
    balancer.retain(reloaded.rrsets())
    assert order(balancer, rrset(reloaded, "rr"))[0] == "b", "rotation continues across the reload"
    balancer.retain([])
    assert len(balancer.rotors) == 0 and balancer.counters == {}


def test_retain_lets_go_of_groups_whose_members_changed(tmp_path: Path) -> None:
    """A reload that changes an RRset's members starts its groups afresh and drops the
    old groups' rotors, shared and per client: reloading never grows the table."""
    balancer = Balancer()
    for version in range(5):
        _, zone, problems = load_text(tmp_path, "r.test", 'records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n'
                                      f"  m: {{MX: ['10 mx1', '10 mx{version + 2}', '20 backup']}}\n")
        assert zone is not None, problems
        rrsets = zone.rrsets()
        balancer.retain(rrsets)
        for client in (b"\x7f\x00\x01", b"\x7f\x00\x02"):
            balancer.plan(rrset_of(zone, "m.r.test."), EMPTY_HEALTH, EMPTY_OVERRIDES)
            balancer.rotors.deal(client, [key for key in list(balancer.rotors.shared)])
    # one RRset, two groups (preference 10 and 20): their shared rotors and two clients' copies
    assert len(balancer.rotors.shared) == 2 and len(balancer.rotors.clients) == 4


def rrset_of(zone, owner: str):
    return zone.nodes[names.from_text(owner)].rrsets[QTYPE.MX]


def test_client_table_drops_the_least_recently_answered() -> None:
    """The bounded client table is LRU: a resolver that keeps asking keeps its rotation
    while one-shot clients come and go (insertion order would drop it first)."""
    rotors = Rotors(limit=3)
    key = ("pool", QTYPE.MX, 10, ("mx1.", "mx2."), "weighted")

    def answer(client: bytes) -> None:
        rotors.for_answer(client, key).turn += 1
        rotors.deal(client, [key])

    answer(b"busy")
    own = rotors.clients[(b"busy", key)]  # its copy, dealt after its first answer
    for once in (b"b", b"c", b"d", b"e"):
        answer(b"busy")
        answer(once)
    assert [client for client, _ in rotors.clients] == [b"d", b"busy", b"e"]
    assert rotors.clients[(b"busy", key)] is own, "never dropped and dealt again"
    assert own.turn == 5  # 1 when copied, then four answers of its own


def test_flapping_weights_do_not_starve() -> None:
    """Weights that move within an epoch (a member flapping up/degraded) keep the credit:
    the lighter member still comes first in its share (a reset would starve it)."""
    rotor = SmoothWeighted()
    epoch = ("same eligible members and zone weights",)
    firsts = Counter(rotor.pick((4, 4) if turn % 2 else (4, 1), epoch=epoch) for turn in range(6000))
    # Flapping on every single answer is the extreme; what matters is that neither member
    # is starved (a credit reset on each change gave member 1 nothing at all).
    assert firsts[0] >= 1500 and firsts[1] >= 1500, firsts


def test_fail_open_ignores_answer_n(tmp_path: Path) -> None:
    _, zone, problems = load_text(tmp_path, "f.test", 'records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n'
                                  "  p: {MX: {ttl: 60, answer: 1, records: ['10 a', '10 b', '20 c']}}\n"
                                  "  a: {A: 192.0.2.11}\n  b: {A: 192.0.2.12}\n  c: {A: 192.0.2.13}\n")
    assert zone is not None, problems
    rrset_ = zone.nodes[names.from_text("p.f.test.")].rrsets[QTYPE.MX]
    down = HealthView(MappingProxyType({(names.from_text("p.f.test."), QTYPE.MX, f"{m}.f.test."):
                                        MemberHealth(Status.DOWN, 0.0, None, None, ()) for m in "abc"}))
    plan = Balancer().plan(rrset_, down, EMPTY_OVERRIDES)
    assert plan.fail_open and len(plan.order) == 3, "every member, despite answer: 1"
    assert len(Balancer().plan(rrset_, EMPTY_HEALTH, EMPTY_OVERRIDES).order) == 2, "one per group otherwise"


def test_degraded_counts_under_round_robin_too(tmp_path: Path) -> None:
    zone, balancer = load(tmp_path), Balancer()
    view = health("rr", b=Status.DEGRADED)  # effective 4, 1, 4 per 9 answers
    firsts = Counter(order(balancer, rrset(zone, "rr"), view)[0] for _ in range(900))
    assert firsts == {"a": 400, "b": 100, "c": 400}
    for _ in range(9):
        answer = order(balancer, rrset(zone, "rr"), view)
        start = ["a", "b", "c"].index(answer[0])
        assert answer[:3] == (["a", "b", "c"] * 2)[start:start + 3], "the rest follow in cyclic order"


def targets(balancer: Balancer, rrset_, view=EMPTY_HEALTH, overrides=EMPTY_OVERRIDES) -> dict[str, Fraction | None]:
    """``peek``'s target per member (first label): the share of its group's mail it should get."""
    plan = balancer.peek(rrset_, view, overrides)
    return {member.text.split(".")[0]: member.target for member in plan.members}


def test_target_is_the_effective_weight_over_the_groups(tmp_path: Path) -> None:
    """status' "target" (ordering.target_shares): degraded at a quarter of its weight, a
    standby 0 while a weighted member is up and sharing when none is, a group with no
    usable member none (it leaves the answer), fail open every member by its configured
    weight (a standby as 1, as the Balancer orders them),
    round robin equal, ``fixed`` none (its order is the zone's, not a split)."""
    zone, balancer = load(tmp_path), Balancer()
    w = rrset(zone, "w")
    assert targets(balancer, w) == {"a": Fraction(1, 2), "b": Fraction(1, 3), "c": Fraction(1, 6), "s": 0, "d": 1}
    assert targets(balancer, w, health("w", a=Status.DEGRADED)) == {  # 3 → 0.75 against 2 and 1
        "a": Fraction(1, 5), "b": Fraction(8, 15), "c": Fraction(4, 15), "s": 0, "d": 1}
    weighted_down = health("w", a=Status.DOWN, b=Status.DOWN, c=Status.DOWN)
    assert targets(balancer, w, weighted_down) == {"a": 0, "b": 0, "c": 0, "s": 1, "d": 1}
    group_down = health("w", a=Status.DOWN, b=Status.DOWN, c=Status.DOWN, s=Status.DOWN)
    assert targets(balancer, w, group_down) == {"a": None, "b": None, "c": None, "s": None, "d": 1}
    all_down = health("w", a=Status.DOWN, b=Status.DOWN, c=Status.DOWN, s=Status.DOWN, d=Status.DOWN)
    assert targets(balancer, w, all_down) == {"a": Fraction(3, 7), "b": Fraction(2, 7), "c": Fraction(1, 7),
                                              "s": Fraction(1, 7), "d": 1}, "fail open: everyone, a standby as 1"
    assert targets(balancer, rrset(zone, "rr"), health("rr", b=Status.DOWN)) == {
        "a": Fraction(1, 2), "b": 0, "c": Fraction(1, 2), "d": 1}
    _, fixed, problems = load_text(tmp_path, "f.test", ZONE.replace("policy: weighted", "policy: fixed"))
    assert fixed is not None, problems
    plan = balancer.peek(fixed.nodes[names.from_text("w.f.test.")].rrsets[QTYPE.MX], EMPTY_HEALTH, EMPTY_OVERRIDES)
    assert {member.target for member in plan.members} == {None}


def test_split_counts_what_a_sender_delivers(tmp_path: Path) -> None:
    """``MemberCounters.split``: per answer, 1/k of its group's mail to each of the k
    members of the group it carries; the promoted MX alone (k = 1), the rest of its group none."""
    _, zone, problems = load_text(tmp_path, "p.test", """
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  all: {MX: ['10 a', '10 b', '10 c', '20 d']}
  promoted: {MX: {promote: true, records: ['10 a', '10 b', '20 d']}}
  a: {A: 192.0.2.11}
  b: {A: 192.0.2.12}
  c: {A: 192.0.2.13}
  d: {A: 192.0.2.14}
""")
    assert zone is not None, problems
    balancer = Balancer()
    for owner in ("all", "promoted"):
        for _ in range(6):
            balancer.plan(zone.nodes[names.from_text(f"{owner}.p.test.")].rrsets[QTYPE.MX], EMPTY_HEALTH,
                          EMPTY_OVERRIDES)

    def mail(owner: str) -> dict[str, Fraction]:
        prefix = names.from_text(f"{owner}.p.test.")
        return {member.split(".")[0]: found.mail for (name, _, member), found in balancer.counters.items()
                if name == prefix}

    assert mail("all") == {"a": 2, "b": 2, "c": 2, "d": 6}
    assert mail("promoted") == {"a": 3, "b": 3, "d": 6}


def test_a_member_expires_from_caches_with_its_longest_lived_answer(tmp_path: Path) -> None:
    """An answer at the full TTL, then one at the short TTL (a member degraded): the first
    one still names mx1 in caches until its TTL ends, and the counters say so (drains
    report "fully effective in" from it)."""
    _, zone, problems = load_text(tmp_path, "t.test", 'ttl: 3600\nrecords:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n'
                                  "  m: {MX: {check: {kind: tcp, port: 25}, records: ['10 mx1', '10 mx2']}}\n"
                                  "  mx1: {A: 192.0.2.11}\n  mx2: {A: 192.0.2.12}\n")
    assert zone is not None, problems
    now = [0.0]
    balancer = Balancer(clock=lambda: now[0])
    m = zone.nodes[names.from_text("m.t.test.")].rrsets[QTYPE.MX]
    mx1, mx2 = ((names.from_text("m.t.test."), QTYPE.MX, f"{name}.t.test.") for name in ("mx1", "mx2"))
    assert balancer.plan(m, EMPTY_HEALTH, EMPTY_OVERRIDES).ttl == 3600
    now[0] = 10.0
    degraded = HealthView(MappingProxyType({mx2: MemberHealth(Status.DEGRADED, 0.0, None, None, ())}))
    assert balancer.plan(m, degraded, EMPTY_OVERRIDES).ttl == 5  # the check's default down_ttl
    assert balancer.counters[mx1].expires == 3600.0 and balancer.counters[mx1].last_given == 10.0
