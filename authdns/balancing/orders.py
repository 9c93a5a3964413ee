"""``Orders``: the orders one balanced answer goes through, worked out once each.

Every deterministic policy is a small state machine whose state is its rotors: a
round-robin group's turn (modulo its eligible members), a weighted group's smooth
credit (``rotors.SmoothWeighted``). Round robin over n members repeats every n
answers; smooth weighted round robin returns to zero credit after sum(weights) picks. So
for one health view and one set of overrides an answer's orders repeat with a finite
period, and the query path need not plan each answer:

- the first time a state of the rotors is met, the Balancer plans the answer by its own
  code, committing (the slow path: rotors move, members are counted), and the move it
  made — how far each round-robin turn went, the credit each weighted group was left
  with — is recorded against that state;
- when the rotors are in a recorded state again, the move is replayed and the index of
  the plan returned: nothing is planned, and the caller splices the variant it rendered
  for that index. The rotors end exactly where the slow path would have left them, so
  memoised and planned answers (and other answers sharing a rotor: an exchanger's
  addresses in an MX answer's additional section and in its own A answer) interleave
  in one rotation.

The recorded moves are a function of the rotors' state alone, so one record serves
every client: each query's rotors are that client's (``rotors.Rotors.for_answer``:
its own, or the shared ones it is then dealt a copy of), and a thousand resolvers
walking the same cycle share its states.

Plans that give the same order share an index (weights 3:1 have four states, two
orders). At most ``STATE_LIMIT`` states are recorded per answer and ``VARIANT_LIMIT``
orders indexed; beyond, each query is planned (the answer is still right, just not
memoised). ``random`` has no state to memoise: every answer is planned and its orders
indexed, so the caller still renders each distinct order once. Answers counted on
replay are added to the members' counters when those are read (``fold``).

Lives on the event-loop thread with its Balancer; writes no bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from authdns.answering.answer import Answer
from authdns.zones.balancespec import Policy

if TYPE_CHECKING:
    from authdns.health.monitor import HealthView
    from authdns.balancing.ordering import Plan, _Prepared
    from authdns.balancing.overrides import Overrides
    from authdns.balancing.rotors import Rotors

STATE_LIMIT = 1024  # rotor states recorded per answer: a period longer than this is planned per query
# Distinct orders indexed per answer: round robin over n members with answer: N has n of
# them, and each one not indexed is planned and rendered per query (the caller bounds the
# bytes of what it renders: engine/cache.py)
VARIANT_LIMIT = STATE_LIMIT

PlanKey = tuple  # (section, owner, rtype), as ``Balancer._choose`` keys its plans
Plans = dict  # PlanKey -> Plan
UNLISTED = -1  # advance(): this answer's order has no index; its plans are in ``unlisted``


class Orders:
    """The orders of one balanced answer under one health view and one set of overrides."""

    __slots__ = ("answer", "health", "overrides", "live", "plans", "unlisted", "counts", "lasts", "signatures", "_rotors", "_keys",
                 "_plan", "_count", "_clock", "_preps", "_turned", "_smoothed", "_states", "_index", "_memoised")

    def __init__(self, answer: Answer, health: HealthView, overrides: Overrides, preps: dict[PlanKey, _Prepared],
                 rotors: list[tuple[tuple, int | None, tuple]], memoised: bool, table: Rotors,
                 plan: Callable[[bytes | None], tuple[Plans, tuple]], count: Callable[[_Prepared, Plan, int, float], None],
                 clock: Callable[[], float]) -> None:
        """``rotors``: the key of each distinct rotor the answer may move, with its
        group's eligible count when it turns round robin (None: it keeps smooth credit)
        and its group's weighted epoch (``rotors_of``); ``table`` holds them per client.
        ``plan`` plans the next answer to a client committing (the slow path) and says
        which rotor keys it moved, in order, repeats included (``Rotors.deal``); ``count``
        adds answers given on replay to the members' counters."""
        self.answer, self.health, self.overrides = answer, health, overrides
        self.live = True  # False once the Balancer has let it go: the caller asks for new Orders
        self.plans: list[Plans] = []  # by index: each distinct order of the answer
        self.unlisted: Plans = {}  # the last plans that got no index (UNLISTED)
        self.counts: list[int] = []  # answers replayed per index, not yet added to the counters
        self.lasts: list[float] = []  # wall time of the last replayed answer, per index
        # by index: what its rendering depends on (each RRset's order, promotions, TTL), the
        # same across Orders of other health views, so a caller can keep renderings by it
        self.signatures: list[tuple] = []
        self._plan, self._count, self._clock, self._preps, self._rotors = plan, count, clock, preps, table
        # Rotors by key in the order the slow path meets them (a client is dealt its copies
        # in that order: the bounded table's evictions must agree), then by kind.
        self._keys = [key for key, _, _ in rotors]
        self._turned = [(at, width) for at, (_, width, _) in enumerate(rotors) if width is not None]
        self._smoothed = [(at, epoch, (0,) * len(epoch)) for at, (_, width, epoch) in enumerate(rotors) if width is None]
        # state -> (index, turn moves, credit moves, keys moved in slow-path order)
        self._states: dict[tuple, tuple[int, tuple[int, ...], tuple, tuple]] = {}
        self._index: dict[tuple, int] = {}  # an order's signature -> its index
        self._memoised = memoised  # False when a policy draws at random: nothing to replay

    def advance(self, client: bytes | None = None) -> int:
        """The next answer to ``client`` (None: the shared rotation): moves its rotors as
        the slow path would and returns the index of its plans in ``plans`` (UNLISTED:
        see ``unlisted``)."""
        if not self._memoised:
            return self._listed(self._plan(client)[0])
        table = self._rotors
        rotors = [table.for_answer(client, key) for key in self._keys]
        turned = [rotors[at] for at, _ in self._turned]
        smoothed = [rotors[at].smooth for at, _, _ in self._smoothed]
        state = self._state(turned, smoothed)
        found = self._states.get(state)
        if found is not None:
            index, turns, credits, moved_keys = found
            for rotor, moved in zip(turned, turns):
                rotor.turn += moved
            for smooth, moved in zip(smoothed, credits):
                if moved is not None:  # None: the plan left this rotor alone
                    smooth.epoch, smooth.credit = moved  # pick() never mutates a credit list
            table.deal(client, moved_keys)  # as the slow path deals and refreshes, in its order
            self.counts[index] += 1
            self.lasts[index] = self._clock()
            return index
        turns_before = [rotor.turn for rotor in turned]
        credits_before = [smooth.credit for smooth in smoothed]
        plans, moved_keys = self._plan(client)  # moves these same rotors, and deals the client its copies
        index = self._listed(plans)
        if index != UNLISTED and len(self._states) < STATE_LIMIT:
            turns = tuple(rotor.turn - before for rotor, before in zip(turned, turns_before))
            # A rotor the plan did not touch (its RRset left out of this answer) keeps
            # whatever it holds on replay: pick() always assigns a new credit list.
            credits = tuple((smooth.epoch, smooth.credit) if smooth.credit is not before else None
                            for smooth, before in zip(smoothed, credits_before))
            self._states[state] = (index, turns, credits, moved_keys)
        return index

    def plans_at(self, index: int) -> Plans:
        return self.unlisted if index == UNLISTED else self.plans[index]

    def fold(self) -> None:
        """Add the answers given on replay to the members' counters."""
        for index, times in enumerate(self.counts):
            if times:
                for key, plan in self.plans[index].items():
                    self._count(self._preps[key], plan, times, self.lasts[index])
                self.counts[index] = 0

    @property
    def states(self) -> int:
        """Rotor states recorded so far (the period, once every one has been met)."""
        return len(self._states)

    def _state(self, turned: list, smoothed: list) -> tuple:
        """The rotors as the policies read them: turns modulo the group's eligible count;
        credit, or zero credit when a new weighted cycle is due (``SmoothWeighted.pick``)."""
        state: list = [rotor.turn % width for rotor, (_, width) in zip(turned, self._turned)]
        for smooth, (_, epoch, zeros) in zip(smoothed, self._smoothed):
            same = smooth.epoch is epoch or smooth.epoch == epoch  # equal epochs keep their credit
            state.append(tuple(smooth.credit) if same and len(smooth.credit) == len(zeros) else zeros)
        return tuple(state)

    def signature_at(self, index: int) -> tuple | None:
        """What the rendering of ``index`` depends on (None: UNLISTED, rendered each time)."""
        return None if index == UNLISTED else self.signatures[index]

    def _listed(self, plans: Plans) -> int:
        signature = tuple((key, plan.order, plan.promoted, plan.ttl) for key, plan in plans.items())
        index = self._index.get(signature)
        if index is None:
            if len(self.plans) >= VARIANT_LIMIT:
                self.unlisted = plans
                return UNLISTED
            index = self._index[signature] = len(self.plans)
            self.plans.append(plans)
            self.signatures.append(signature)
            self.counts.append(0)
            self.lasts.append(0.0)
        return index


def rotors_of(preps: dict[PlanKey, _Prepared]) -> tuple[list, bool]:
    """The keys of the distinct rotors an answer's RRsets may move, each with its
    group's eligible count when it turns round robin (None: smooth credit) and its
    group's epoch; and whether the answer's orders can be memoised (False when a policy
    draws at random)."""
    found: dict[tuple, tuple] = {}
    for prep in preps.values():
        balance = prep.rrset.balance
        assert balance is not None
        if balance.policy is Policy.RANDOM:
            return [], False
        if balance.policy is Policy.FIXED or prep.fail_open:
            continue  # its order follows the weights alone; fail open answers in zone order
        for group in prep.groups:
            if not group.weights:
                continue  # planned without touching its rotor
            if group.subsets is not None:  # answer: N under weights turns a counter too (subsets.py)
                width: int | None = group.subsets.period
            elif balance.policy is Policy.ROUND_ROBIN and group.uniform:
                width = len(group.eligible)
            else:
                width = None  # smooth credit
            found[group.rotor_key] = (group.rotor_key, width, group.epoch)
    return list(found.values()), True
