"""Load-aware ordering: which members of a balanced MX/A/AAAA RRset an answer carries,
in what order, and why.

``Balancer.apply(answer, health, overrides)`` takes the engine's ``Answer`` (zone order)
and returns it ordered (``arrange``): per RRset, the members that are eligible (health,
drains, standby), ordered by the RRset's policy, cut to ``answer: N``, MX preferences
promoted. ``Balancer.orders(...)`` gives the same sequence of answers memoised over its
period (``orders.Orders``: the cache's path). ``Balancer.peek_answer`` and ``peek``
compute the next answer without moving any rotor or counting anything, with each
member's reason: that is ``authdns explain`` and ``status``. The Balancer is mutable and
lives on the event-loop thread only; it does no I/O and writes no bytes.

Rules (README, "Load balancing"):
- MX members trade places only inside a preference group; groups stay in ascending
  preference (RFC 5321 §5.1). A/AAAA: the whole RRset is one group.
- A member that is down leaves the answer, its addresses too. A member with weight 0
  (configured, or drained by an operator) is a standby: used only when every member of
  its group with a weight above 0 is down (Route 53's semantics). An MX group with no
  usable member leaves the answer; when no group is left, every member is answered
  (fail open: senders queue and retry, nothing is lost).
- Effective weight = base weight × 4 when up, × 1 when degraded (a 4xx greeting: it
  stays, at a quarter of its share). Base weight = the operator's temporary weight, else
  the configured one, else for ``weight: auto`` round(10 × fastest / own) of the
  members' smoothed probe round-trip times (each at least 10 ms), between 1 and 10.
- A check with an agent (``health/agent.py``) scales that further: effective = base ×
  the factor × the agent's tenths (10 % steps), the group's weights then divided by
  their gcd so that cycles stay as short as the weights allow; ``drain`` (or 0 %) makes
  the member a standby, ``maint`` reaches here as down.
- What each member should get (``target_shares``: effective weight over its group's) and
  what a sender gets from each answer (``Plan.split``: 1/k to each of the k members of
  its group the answer carries, the promoted MX alone) are both decided here, so
  ``status`` compares like with like (README, "Operating it").
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

from dnslib import QTYPE

from authdns.answering.answer import Answer
from authdns.balancing.arrange import arrange
from authdns.zones.balancespec import BalanceSpec, MemberKey, Policy
from authdns.balancing.counters import MemberCounters
from authdns.health.monitor import HealthView, MemberAgent, Status
from authdns.base.names import Name
from authdns.balancing.orders import Orders, PlanKey, Plans, rotors_of
from authdns.balancing.rotors import Rotors
from authdns.balancing.overrides import Overrides
from authdns.balancing.subsets import SubsetCycle, subset_cycle
from authdns.zones.zone import RRset, member_key
from authdns.configuration.config import DEFAULT_CLIENT_ROTORS

LIVE_ORDERS_LIMIT = 200_000  # Orders kept for counting (one per cached balanced answer, as the cache's bound)
UP_FACTOR = 4  # effective weight per unit of base weight when up ...
DEGRADED_FACTOR = 1  # ... and when degraded: a quarter of its share
AUTO_SCALE = 10  # the fastest auto member's base weight; the slowest gets at least 1
AUTO_RTT_FLOOR = 0.010  # seconds: below this, round-trip times count as equal (loopback noise)
AGENT_SCALE = 10  # an agent's weight is in tenths (agent.quantise): ×10 at 100 %
PLAIN_SCALE = Fraction(1, UP_FACTOR)  # effective weight → zone weight units, without an agent


@dataclass(frozen=True, slots=True)
class MemberPlan:
    """One member in the next answer, or left out of it, and why."""

    index: int  # position in the zone file's RRset
    text: str  # the exchange or the address
    preference: int | None  # MX only
    configured: int | None  # configured weight (None: auto)
    base: int  # after drains, temporary weights and auto
    effective: int  # what the policy used (0: not eligible)
    status: Status
    included: bool
    reason: str
    target: Fraction | None = None  # the share of its group's mail it should get (``target_shares``)
    scale: Fraction = PLAIN_SCALE  # effective × scale = the weight in the zone file's units
    agent: MemberAgent | None = None  # what its agent said, if its check has one


@dataclass(frozen=True, slots=True)
class Plan:
    """The next answer for one RRset: members in answer order, then those left out."""

    owner: Name
    rtype: int
    policy: Policy
    members: tuple[MemberPlan, ...]
    order: tuple[int, ...]  # record indices in answer order
    promoted: frozenset[int]  # record indices whose MX preference is lowered by one
    fail_open: bool
    predictable: bool = True  # False for `random`: explain shows one possible order
    firsts: tuple[int, ...] = ()  # record indices that came first in their group (counted)
    # (record index, k) for each member a conforming sender delivers this answer's mail
    # of its group to: 1/k of it (RFC 5321 §5.1: uniform among the k equal-preference
    # members given; an MX promoted by `promote` is alone at its preference: k = 1).
    split: tuple[tuple[int, int], ...] = ()
    ttl: int = 0  # the TTL this answer carries the RRset with (``served_ttl``)
    short_ttl: str = ""  # why it is below the RRset's own, if it is: which members are unsettled


@dataclass(slots=True)
class _Group:
    """One preference group as prepared for a (zone, health, overrides) state."""

    preference: int | None
    members: list["_Member"]
    weights: tuple[int, ...]  # effective (0: not eligible); empty: the group has no usable member
    why: str
    eligible: list[int]  # positions with weight > 0
    uniform: bool  # every eligible weight equal: the plain policy
    epoch: tuple  # what starts a new weighted cycle (SmoothWeighted)
    rotor_key: tuple
    subsets: SubsetCycle | None = None  # weighted with answer: N (subsets.py)
    scale: Fraction = PLAIN_SCALE  # effective weight × scale = zone units (agent groups are reduced by gcd)


@dataclass(slots=True)
class _Prepared:
    """Everything about an RRset's next answers that depends only on the zone, the
    health view and the overrides: computed once per such state, not per query."""

    rrset: RRset
    health: HealthView
    overrides: Overrides
    keys: tuple[MemberKey, ...]
    members: list["_Member"]
    groups: list[_Group]
    fail_open: bool
    ttl: int  # served_ttl
    short_ttl: str


@dataclass(frozen=True, slots=True)
class _Member:
    index: int
    text: str
    configured: int | None
    base: int
    status: Status
    drained: bool
    temporary: int | None
    agent: MemberAgent | None = None  # None: no agent on its check (or none asked yet)


class Balancer:
    def __init__(self, rng: random.Random | None = None, clock=time.time,
                 client_rotors: int = DEFAULT_CLIENT_ROTORS) -> None:
        self.rotors = Rotors(client_rotors)  # shared and per client prefix (rotors.py)
        self._client: bytes | None = None  # whose rotors the answer being planned moves
        self._dealt: list[tuple] = []  # rotor keys the answer moved, in order, repeats included (rotors.deal)
        self.last_moved: tuple[tuple, ...] = ()  # ... of the last answer planned committing (orders.py replays it)
        # Whether the last answer planned read a client's rotors (its order depends on who
        # asked): the responder's ECS scope (answering/ecs.py) reads it after apply().
        self.client_rotated = False
        self._counters: dict[MemberKey, MemberCounters] = {}
        self.fail_open_answers = 0
        self.rng = rng or random.Random()
        self.clock = clock
        self.prepared: dict[int, _Prepared] = {}  # id(rrset) -> for the current health/overrides
        self.live_orders: dict[int, Orders] = {}  # id -> Orders whose replayed answers are still to count
        self.planned = 0  # answers planned in full (the rest of those given were replayed by Orders)

    @property
    def counters(self) -> dict[MemberKey, MemberCounters]:
        """Per member: first places, answers, last answer; including answers replayed by Orders."""
        for orders in self.live_orders.values():
            orders.fold()
        return self._counters

    # -- the query path -----------------------------------------------------------

    def apply(self, answer: Answer, health: HealthView, overrides: Overrides, client: bytes | None = None) -> Answer:
        """The answer with every balanced RRset ordered (README, "Load balancing"): the
        next answer to ``client`` (``base/hostport.client_prefix``; None: the shared
        rotation), so its rotors move and members are counted."""
        chosen = self._choose(answer, health, overrides, commit=True, detail=False, client=client)
        return arrange(answer, chosen) if chosen else answer

    def peek_answer(self, answer: Answer, health: HealthView, overrides: Overrides,
                    client: bytes | None = None) -> tuple[Answer, Plans]:
        """What ``apply`` would answer ``client`` next (None: a client new to the
        rotation), and each balanced RRset's plan with every member's reason, by
        (section, owner, type); nothing moves (``explain``)."""
        chosen = self._choose(answer, health, overrides, commit=False, detail=True, client=client)
        return (arrange(answer, chosen) if chosen else answer), chosen

    def peek(self, rrset: RRset, health: HealthView, overrides: Overrides) -> Plan:
        """One RRset's next plan with every member's reason; nothing moves (``status``)."""
        return self._plan(rrset, health, overrides, commit=False, detail=True)

    def plan(self, rrset: RRset, health: HealthView, overrides: Overrides) -> Plan:
        """One RRset ordered for the next answer, with every member's reason: its rotors
        move and its members are counted, as when a query is answered."""
        return self._plan(rrset, health, overrides, commit=True, detail=True)

    def orders(self, answer: Answer, health: HealthView, overrides: Overrides, previous: Orders | None) -> Orders:
        """The answer's orders for this health view and these overrides, memoised over
        their period (``orders.Orders``); ``previous`` (the caller's Orders for another
        state) is let go, its answers counted."""
        if previous is not None:
            self._release(previous)
        preps: dict[PlanKey, _Prepared] = {}
        for section, placed_list in (("answer", answer.answer), ("additional", answer.additional)):
            for placed in placed_list:
                if placed.rrset.balance is not None:
                    preps[(section, placed.owner, placed.rrset.rtype)] = self._prepare(placed.rrset, health, overrides)
        rotors, memoised = rotors_of(preps)
        if len(self.live_orders) >= LIVE_ORDERS_LIMIT:
            self._release_all()  # bounded: their callers ask for new ones
        orders = Orders(answer, health, overrides, preps, rotors, memoised, self.rotors,
                        lambda client: (self._choose(answer, health, overrides, commit=True, detail=False,
                                                     client=client), self.last_moved),
                        self._count_plan, self.clock)
        self.live_orders[id(orders)] = orders
        return orders

    def _choose(self, answer: Answer, health: HealthView, overrides: Overrides, commit: bool,
                detail: bool, client: bytes | None = None) -> Plans:
        """The plan of every balanced RRset of the answer, in the order ``arrange`` meets
        them; the additional section's balanced RRsets of targets that stay. Builds no
        records: the cache's path needs only the plans to pick a precompiled variant.
        The rotors read (and, committing, moved) are ``client``'s (rotors.py)."""
        if commit:
            self.planned += 1
        self._client, self._dealt = client, []
        self.client_rotated = False
        try:
            return self._choose_groups(answer, health, overrides, commit, detail)
        finally:
            if commit:
                self.last_moved = tuple(self._dealt)
                self.rotors.deal(client, self._dealt)
            self._client, self._dealt = None, []

    def _choose_groups(self, answer: Answer, health: HealthView, overrides: Overrides, commit: bool,
                       detail: bool) -> Plans:
        chosen: Plans = {}
        staying: set[Name] = set()
        leaving: set[Name] = set()
        for placed in answer.answer:
            rrset = placed.rrset
            if rrset.balance is None:
                staying.update(rrset.targets)
                continue
            plan = self._plan(rrset, health, overrides, commit, detail)
            chosen[("answer", placed.owner, rrset.rtype)] = plan
            if rrset.rtype == QTYPE.MX:
                kept = {rrset.targets[index] for index in plan.order}
                staying |= kept
                leaving.update(target for target in rrset.targets if target not in kept)
            else:
                staying.update(rrset.targets)
        for placed in answer.additional:
            rrset = placed.rrset
            if rrset.balance is None or placed.required or (placed.owner in leaving and placed.owner not in staying):
                continue
            chosen[("additional", placed.owner, rrset.rtype)] = self._plan(rrset, health, overrides, commit, detail)
        return chosen

    # -- planning -------------------------------------------------------------------

    def _plan(self, rrset: RRset, health: HealthView, overrides: Overrides, commit: bool, detail: bool) -> Plan:
        """Order one RRset for the next answer; ``commit=False`` leaves every rotor and
        counter as it was. ``detail`` adds each member's reason; the query path leaves
        it out."""
        balance = rrset.balance
        assert balance is not None
        prep = self._prepare(rrset, health, overrides)
        plans: dict[int, MemberPlan] = {}
        order: list[int] = []
        firsts: list[int] = []
        split: list[tuple[int, int]] = []
        promoted: set[int] = set()
        for group in prep.groups:
            if not group.weights:
                if detail:
                    for member in group.members:  # the group leaves the answer: no share to give
                        plans[member.index] = _member_plan(member, group.preference, 0, False, _left_out(member), None)
                continue
            if prep.fail_open:
                # Every member, in zone order, no rotor read: one answer, precompiled like
                # any other (a rotation would only change who is first, at the price of
                # one rendering of the whole RRset per member); senders split equal
                # preferences themselves (RFC 5321 §5.1).
                chosen = list(group.eligible)
            else:
                chosen = self._order_group(balance, group, commit)
                if balance.answer is not None:
                    chosen = chosen[: balance.answer]
            if not chosen:
                continue
            firsts.append(group.members[chosen[0]].index)
            if balance.promote and rrset.rtype == QTYPE.MX:
                promoted.add(group.members[chosen[0]].index)
                split.append((group.members[chosen[0]].index, 1))
            else:
                split.extend((group.members[position].index, len(chosen)) for position in chosen)
            order.extend(group.members[position].index for position in chosen)
            if detail:
                self._explain_group(balance, group, chosen, plans)
        if commit:
            self._count(rrset, prep, order, firsts, split)
        if detail:
            in_order = [plans[index] for index in order]
            left_out = [plans[member.index] for member in prep.members if member.index not in set(order)]
            details = tuple(in_order + left_out)
        else:
            details = ()
        return Plan(rrset.name, rrset.rtype, balance.policy, details, tuple(order),
                    frozenset(promoted), prep.fail_open, balance.policy is not Policy.RANDOM, tuple(firsts),
                    tuple(split), prep.ttl, prep.short_ttl)

    # -- Orders and rotors -------------------------------------------------------------

    def _count_plan(self, prep: _Prepared, plan: Plan, times: int, when: float) -> None:
        self._count(prep.rrset, prep, plan.order, plan.firsts, plan.split, times, when)

    def _release(self, orders: Orders) -> None:
        orders.fold()
        orders.live = False
        self.live_orders.pop(id(orders), None)

    def _release_all(self) -> None:
        for orders in list(self.live_orders.values()):
            self._release(orders)

    def _explain_group(self, balance: BalanceSpec, group: _Group, chosen: list[int], plans: dict) -> None:
        weights, why, subsets = group.weights, group.why, group.subsets
        targets = target_shares(balance.policy, weights)
        for rank, position in enumerate(chosen):
            member = group.members[position]
            if subsets is not None:
                reason = _sampled(balance, subsets, position, len(chosen))
            else:
                reason = _included(balance.policy, rank, member, weights[position], why)
            plans[member.index] = _member_plan(member, group.preference, weights[position], True, reason,
                                               targets[position], group.scale)
        for position, member in enumerate(group.members):
            if member.index not in plans:
                if weights[position] <= 0:
                    reason = _left_out(member)
                elif subsets is not None:
                    reason = _sampled(balance, subsets, position, 0)
                else:
                    reason = f"cut by answer: {balance.answer}"
                plans[member.index] = _member_plan(member, group.preference, weights[position], False, reason,
                                                   targets[position], group.scale)

    def _prepare(self, rrset: RRset, health: HealthView, overrides: Overrides) -> _Prepared:
        """The RRset's members and groups for this health view and these overrides,
        computed once per state change (identity of the three values)."""
        found = self.prepared.get(id(rrset))
        if found is not None and found.rrset is rrset and found.health is health and found.overrides is overrides:
            return found
        balance = rrset.balance
        assert balance is not None
        keys = tuple(member_key(rrset, rdata) for rdata in rrset.rdatas)
        members = self._members(rrset, balance, health, overrides, keys)
        grouped = _groups(rrset, members)
        agent = balance.check is not None and balance.check.agent is not None
        usable = {preference: _eligible(group, agent) for preference, group in grouped.items()}
        fail_open = not any(weights for weights, _, _ in usable.values())
        groups = []
        for preference, group in grouped.items():
            weights, why, scale = usable[preference]
            if fail_open:
                scale = PLAIN_SCALE
                weights = tuple(max(member.configured or 1, 1) * UP_FACTOR for member in group)
                why = "fail open: no member of the RRset is usable, so all are answered, in zone order"
            eligible = [position for position, weight in enumerate(weights) if weight > 0]
            # The epoch: which members are eligible and the weights the zone or an operator
            # gave them; health-derived changes (degraded, auto) keep the cycle's credit.
            epoch = tuple((weight > 0, member.configured, member.temporary, member.drained)
                          for weight, member in zip(weights, group)) if weights else ()
            rotor_key = _rotor_key(rrset, preference, tuple(member.text for member in group))
            # Subsets only where the sender splits the answer evenly: under promote it takes
            # the promoted member first, so the smooth weighted first place is exact already
            # and every answer keeps its N - 1 fallbacks.
            promoted = balance.promote and rrset.rtype == QTYPE.MX
            subsets = (subset_cycle(weights, eligible, balance.answer)
                       if balance.policy is Policy.WEIGHTED and not fail_open and not promoted else None)
            groups.append(_Group(preference, group, weights, why, eligible,
                                 len({weights[p] for p in eligible}) <= 1, epoch, rotor_key, subsets, scale))
        if len(self.prepared) > 100_000:
            self.prepared.clear()  # bounded: entries of replaced RRsets go with it
        ttl, short_ttl = served_ttl(rrset, health, keys)
        prep = self.prepared[id(rrset)] = _Prepared(rrset, health, overrides, keys, members, groups, fail_open,
                                                    ttl, short_ttl)
        return prep

    def _members(self, rrset: RRset, balance: BalanceSpec, health: HealthView, overrides: Overrides,
                 keys: tuple[MemberKey, ...]) -> list[_Member]:
        statuses = [(key, health.status(key), health.get(key)) for key in keys]
        rtts = [max(found.rtt, AUTO_RTT_FLOOR) for (_, _, found), spec in zip(statuses, balance.members)
                if spec.weight is None and found is not None and found.rtt is not None]
        fastest = min(rtts) if rtts else None
        members = []
        for index, ((key, status, found), spec) in enumerate(zip(statuses, balance.members)):
            override = overrides.get(key)
            temporary = override.weight if override is not None else None
            drained = override is not None and override.drained
            if drained:
                base = 0
            elif temporary is not None:
                base = temporary
            elif spec.weight == 0:
                base = 0  # standby, under every policy
            elif balance.policy is not Policy.WEIGHTED:
                base = 1  # only `weighted` reads zone weights (check warns otherwise)
            elif spec.weight is not None:
                base = spec.weight
            else:
                base = _auto_weight(fastest, found.rtt if found is not None else None)
            agent = found.agent if found is not None else None
            if agent is not None and (agent.drained or agent.tenths == 0):
                base = 0  # drained by its agent: a standby while it stays up
            members.append(_Member(index, key[2], spec.weight, base, status, drained, temporary, agent))
        return members

    def _order_group(self, balance: BalanceSpec, group: _Group, commit: bool) -> list[int]:
        """Positions (in the group) of the eligible members, in this answer's order. Every
        policy honours the effective weights where they differ (a degraded member, an
        operator's temporary weight); equal weights give the plain policy."""
        eligible, weights = group.eligible, group.weights
        policy = balance.policy
        if policy is Policy.FIXED:
            return eligible if group.uniform else sorted(eligible, key=lambda p: (-weights[p], p))
        if policy is Policy.RANDOM:
            return self._weighted_shuffle(eligible, weights)
        rotors = self.rotors
        if self._client is not None:
            self.client_rotated = True
        if commit:
            self._dealt.append(group.rotor_key)
        rotor = rotors.for_answer(self._client, group.rotor_key) if commit else rotors.peek(group.rotor_key,
                                                                                                   self._client)
        if policy is Policy.ROUND_ROBIN and group.uniform:
            start = rotor.turn % len(eligible)
            if commit:
                rotor.turn += 1
            return eligible[start:] + eligible[:start]
        if group.subsets is not None:
            # answer: N under weights: the N members whose share of the mail a sender's
            # even split makes the weights (subsets.py); answer: N leaves the others out.
            chosen = group.subsets.members_at(rotor.turn)
            if commit:
                rotor.turn += 1
            return chosen
        first = rotor.smooth.pick(weights, commit, group.epoch)
        if policy is Policy.ROUND_ROBIN:  # the rest in cyclic zone order after the first
            start = eligible.index(first)
            return eligible[start:] + eligible[:start]
        # After the first, a deterministic order: heavier first, then zone order.
        rest = sorted((p for p in eligible if p != first), key=lambda p: (-weights[p], p))
        return [first] + rest

    def _weighted_shuffle(self, eligible: list[int], weights: tuple[int, ...]) -> list[int]:
        """A fresh random order; with unequal weights, each place is drawn in proportion
        to the weights of the members left."""
        left = list(eligible)
        if len({weights[p] for p in left}) == 1:
            self.rng.shuffle(left)
            return left
        order = []
        while left:
            chosen = self.rng.choices(left, weights=[weights[p] for p in left])[0]
            order.append(chosen)
            left.remove(chosen)
        return order

    def _count(self, rrset: RRset, prep: _Prepared, order: Iterable[int], firsts: Iterable[int],
               split: Iterable[tuple[int, int]], times: int = 1, now: float | None = None) -> None:
        if now is None:
            now = self.clock()
        if prep.fail_open:
            self.fail_open_answers += times
        counters_of = self._counters
        for index in order:
            key = prep.keys[index]
            counters = counters_of.get(key)
            if counters is None:
                counters = counters_of[key] = MemberCounters()
            counters.given += times
            if now >= counters.last_given:
                counters.last_given = now
            if now + prep.ttl > counters.expires:
                counters.expires = now + prep.ttl
        for index in firsts:
            counters_of[prep.keys[index]].first += times
        for index, k in split:
            shares = counters_of[prep.keys[index]].split
            shares[k] = shares.get(k, 0) + times

    # -- reloads --------------------------------------------------------------------

    def retain(self, rrsets: Iterable[RRset]) -> None:
        """Keep the rotors and counters of members still served, drop the rest: an
        unchanged RRset keeps its rotation across a reload, so shares stay exact."""
        keys = set()
        rotor_keys: set[tuple] = set()
        for rrset in rrsets:
            if rrset.balance is None:
                continue
            rotor_keys.update(_rotor_keys(rrset))
            for rdata in rrset.rdatas:
                keys.add(member_key(rrset, rdata))
        self._release_all()  # their answers counted first; queries ask for new Orders
        self._counters = {key: value for key, value in self._counters.items() if key in keys}
        self.rotors.retain(rotor_keys)
        self.prepared.clear()


def served_ttl(rrset: RRset, health: HealthView, keys: tuple[MemberKey, ...]) -> tuple[int, str]:
    """The TTL a balanced RRset is answered with under this health view, and why it is
    short if it is: min(TTL, the check's ``down_ttl``) while any member is down,
    degraded or settling after a flip (``MemberHealth.settling``), so resolvers let go of
    an answer made for a changing state within ``down_ttl`` (gdnsd shortens the TTL of
    down resources likewise); otherwise the RRset's own TTL. A TTL is how long the
    receiver may cache the record (RFC 1035 §3.2.1), so it is ours to give per answer.
    README, "Health checks"."""
    check = rrset.balance.check if rrset.balance is not None else None
    if check is None or check.down_ttl >= rrset.ttl:
        return rrset.ttl, ""
    unsettled = []
    for key in keys:
        found = health.get(key)
        if found is None:
            continue  # not watched yet (a reload's new member before its probe): counts as up
        if found.status is not Status.UP:
            unsettled.append(f"{key[2]} {found.status.value}")
        elif found.settling:
            unsettled.append(f"{key[2]} settling (flipped less than {check.settle:g} s ago)")
    if not unsettled:
        return rrset.ttl, ""
    return check.down_ttl, f"down_ttl {check.down_ttl} while " + ", ".join(unsettled)


def target_shares(policy: Policy, weights: tuple[int, ...]) -> tuple[Fraction | None, ...]:
    """The share of its group's mail each member should get (``status``: "target"):
    its effective weight over the sum of its group's (0 when down, drained, or a standby
    while a weighted member is up; a degraded member at its quarter). That is what a
    conforming sender, uniform among the equal-preference members it is given (RFC 5321
    §5.1), delivers under every balancing policy: round robin gives equal weights, and
    ``weighted`` needs ``answer: N`` or ``promote`` to deliver it (README, "Load
    balancing"). None where no share is meant: a group with no usable member (it leaves
    the answer), and ``fixed``, whose order is the zone's, not a split."""
    total = sum(weights)
    if policy is Policy.FIXED or total <= 0:
        return (None,) * len(weights)
    return tuple(Fraction(weight, total) for weight in weights)


def _auto_weight(fastest: float | None, rtt: float | None) -> int:
    """``weight: auto``: inversely proportional to the smoothed round-trip time,
    relative to the fastest member, bounded to 1..10 so one slow member is never starved."""
    if fastest is None or rtt is None:
        return AUTO_SCALE
    return max(1, min(AUTO_SCALE, round(AUTO_SCALE * fastest / max(rtt, AUTO_RTT_FLOOR))))


def _rotor_key(rrset: RRset, preference: int | None, texts: tuple[str, ...]) -> tuple:
    """The key of one group's rotors: the same across reloads while the RRset's owner,
    type, the group's members and the policy stay, so its rotation carries on. The
    members are one string, not a tuple: every balanced answer looks its rotors up by
    this key, a str caches its hash and a tuple does not, so a pool of 500 members would
    cost 500 string hashes per query; the policy by its value, as an Enum hashes in Python."""
    assert rrset.balance is not None
    return (rrset.name, rrset.rtype, preference, "\0".join(texts), rrset.balance.policy.value)


def _rotor_keys(rrset: RRset) -> set[tuple]:
    """Every group's rotor key of a balanced RRset, grouped as ``_prepare`` groups it."""
    return {_rotor_key(rrset, preference, tuple(member_key(rrset, rrset.rdatas[index])[2] for index in indexes))
            for preference, indexes in _group_indexes(rrset).items()}


def _groups(rrset: RRset, members: list[_Member]) -> dict[int | None, list[_Member]]:
    """The members (indexed as the RRset's records) by preference group (``_group_indexes``)."""
    return {preference: [members[index] for index in indexes] for preference, indexes in _group_indexes(rrset).items()}


def _group_indexes(rrset: RRset) -> dict[int | None, list[int]]:
    """Record indexes by group. MX: preference groups in ascending order, zone order
    inside each (RFC 5321 §5.1); otherwise one group."""
    if rrset.rtype != QTYPE.MX:
        return {None: list(range(len(rrset.rdatas)))}
    groups: dict[int | None, list[int]] = {}
    for index in sorted(range(len(rrset.rdatas)), key=lambda i: (rrset.rdatas[i].preference, i)):
        groups.setdefault(rrset.rdatas[index].preference, []).append(index)
    return groups


def _eligible(group: list[_Member], agent: bool = False) -> tuple[tuple[int, ...], str, Fraction]:
    """Effective weights (0: not eligible), why, and their scale to zone units: members
    up with a weight above 0; else the standbys (weight 0) that are up; else none.

    Under an agent each weight is also × the agent's tenths, and the group's weights are
    divided by their gcd: a weighted cycle lasts sum(weights) answers (smooth weighted
    round robin, subsets) and Orders memoises at most STATE_LIMIT states of it, so
    3:1 at 100 % stays 3:1 (not 120:40), and 10 % steps make 3 at 73 % beside 1 at
    100 % 21:10 (31 answers), where whole percents would give 219:100 (319)."""
    def scaled(member: _Member, base: int, tenths: int) -> int:
        if member.status is Status.DOWN:
            return 0
        return base * tenths * (UP_FACTOR if member.status is Status.UP else DEGRADED_FACTOR)

    def tenths_of(member: _Member) -> int:
        return (member.agent.tenths if member.agent is not None else AGENT_SCALE) if agent else 1

    primary = tuple(scaled(member, member.base, tenths_of(member)) for member in group)
    why = ""
    if not any(primary):
        # a standby counts as weight 1, whatever its agent's percent (0 % made it one)
        primary = tuple(scaled(member, 1, AGENT_SCALE if agent else 1) if member.base == 0 else 0
                        for member in group)
        why = "standby: every member with a weight above 0 is down or drained"
        if not any(primary):
            return (), "", PLAIN_SCALE
    if not agent:
        return primary, why, PLAIN_SCALE
    divisor = math.gcd(*primary)
    return tuple(weight // divisor for weight in primary), why, Fraction(divisor, UP_FACTOR * AGENT_SCALE)


def _sampled(balance: BalanceSpec, subsets: SubsetCycle, position: int, answered: int) -> str:
    """Why a member is in this answer (of ``answered`` members) or not (0) when answer: N
    samples under weights."""
    share = subsets.answers_with(position)
    where = f"in this answer of {answered}" if answered else "not in this answer"
    why = (f"{where}; in {100 * share:.0f} % of answers, so a sender's even split (answers of at most "
           f"{balance.answer}) gives it its weight's share")
    alone = subsets.alone()
    if alone and share == 1.0:
        why += f"; above 1/{balance.answer} of the mail, so {100 * alone:.0f} % of answers carry it alone"
    return why


def _left_out(member: _Member) -> str:
    if member.status is Status.DOWN:
        return "maint (its agent said so)" if member.agent is not None and member.agent.maint else "down"
    if member.drained:
        return "drained (weight 0 by the operator)"
    if member.agent is not None and (member.agent.drained or member.agent.tenths == 0):
        return f"drained by its agent ({member.agent.detail}): a standby while it stays up"
    if member.base == 0:
        return "standby (weight 0): used only when every weighted member is down"
    return "its group has no usable member"


def _included(policy: Policy, rank: int, member: _Member, weight: int, why: str) -> str:
    parts = [f"{policy.value} position {rank + 1}"]
    if member.status is Status.DEGRADED:
        parts.append("degraded (4xx greeting): a quarter of its weight, so it comes first less often")
    if member.temporary is not None:
        parts.append(f"temporary weight {member.temporary} set by the operator")
    if member.agent is not None and member.agent.tenths < AGENT_SCALE:
        parts.append(f"its agent says {member.agent.detail!r}: {member.agent.percent} % of its weight")
    if why:
        parts.append(why)
    return "; ".join(parts)


def _member_plan(member: _Member, preference: int | None, effective: int, included: bool, reason: str,
                 target: Fraction | None, scale: Fraction = PLAIN_SCALE) -> MemberPlan:
    return MemberPlan(member.index, member.text, preference, member.configured, member.base, effective,
                      member.status, included, reason, target, scale, member.agent)
