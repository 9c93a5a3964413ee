"""Health of balanced members: the rise/fall state machine per probe target, and the
monitor that runs the probe loops and publishes an immutable ``HealthView``.

A target is ``(host, port, check)``. Members that share a target share its state and
its probes. A target is UP, DEGRADED (it greets with 4xx, RFC 5321 §3.8: alive but busy)
or DOWN; a member is the best of its targets, because an MX exchange is up while at
least one of its addresses is up. Flapping is damped the way gdnsd and HAProxy do it:
``fall`` consecutive failures take a target down, ``rise`` consecutive successes bring
it back.

What is published costs what changed, not what was probed. A member's entry in the
published ``HealthView`` is replaced only when the answers would change: its status
flips, it stops settling (``MemberHealth.settling``: its check's ``settle`` seconds after
a flip, while its RRset keeps the short TTL), its agent's weight or drain changes, or,
for a ``weight: auto`` member (``MemberWatch.weighs_rtt``), its smoothed rtt moves by more
than 20 % (rtts below the balancer's 10 ms floor count as equal). Other members keep
their published entry (the same object), so a receiver can tell what changed by
identity (the worker channel sends only those). Views are coalesced: at most one per
``PUBLISH_GAP`` seconds, the first change at once, the ones within the gap together at
its end, so a pool of hundreds of flapping members costs a few views a second, not one
per probe. The latest outcomes of every member (rtt, last probe) are in ``view()``.

A check with ``agent:`` also asks each target's agent (HAProxy's agent check,
``health/agent.py``) on the same schedule, beside the probe: the probe decides up and
down as before; an agent's ``down`` turns that probe into a failure (``fall`` damps it),
``maint`` takes the target out at once until ``up``/``ready``, ``drain`` and ``N%`` ride
along in ``MemberHealth.agent`` to the balancer. An agent that cannot be reached or
answers garbage changes no status: the last percent and drain it gave are kept, a
``maint`` lapses (its member is left to its check), and the failure is logged, rate-limited.

This module owns probe scheduling and health state. It must not open sockets itself
(``health/probes.py`` does), must never run on the query path, and must never block the event
loop: every probe and every name resolution is a bounded asyncio task.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from authdns.zones.balancespec import PROBE_MIN_GAP, CheckSpec, MemberKey, member_key_text
from authdns.health.agent import STEP, Admin, AgentOutcome, quantise
from authdns.health.probes import ProbeOutcome, ProbeResult, agent_reply, probe

log = logging.getLogger("authdns.health")

RTT_ALPHA = 0.3  # EWMA weight of the newest rtt sample
RTT_PUBLISH_CHANGE = 0.2  # republish when an auto-weighted member's rtt moves this much (relative)
# ... measured on rtts raised to this floor: ordering.AUTO_RTT_FLOOR counts rtts below it as
# equal, so jitter on a fast or loaded network (a probe loop of 500 targets) is no news
RTT_PUBLISH_FLOOR = 0.010
PUBLISH_GAP = 0.25  # seconds between two published views at least: changes within it are coalesced
RESOLVE_EVERY = 60.0  # seconds between resolutions of an MX exchange outside our zones
RESOLVE_TIMEOUT = 5.0  # the system resolver's own retries can take long; we do not wait longer
FIRST_ROUND_MARGIN = 0.5  # seconds beyond the largest probe timeout: QUIT and close take a moment
MIN_INTERVAL = PROBE_MIN_GAP  # never probe a target in a tight loop, whatever the configuration says
ERROR_LOG_EVERY = 60.0  # seconds between log lines for the same recurring error


class Status(enum.Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


_RANK = {Status.DOWN: 0, Status.DEGRADED: 1, Status.UP: 2}
_FROM_PROBE = {ProbeResult.UP: Status.UP, ProbeResult.DEGRADED: Status.DEGRADED, ProbeResult.DOWN: Status.DOWN}

# One probe target: the address probed (text), the port, and the check. CheckSpec
# equality ignores the check's name and file position, so a renamed or moved check keeps
# its state across a reload.
TargetKey = tuple[str, int, CheckSpec]


@dataclass(slots=True)
class TargetState:
    """Rise/fall state of one target, tri-state (gdnsd and HAProxy semantics).

    A DOWN target needs ``rise`` consecutive non-DOWN results to come back; an UP or
    DEGRADED target needs ``fall`` consecutive DOWN results to go down. Between UP and
    DEGRADED it switches on each result, because a 421 greeting is an explicit signal
    (RFC 5321 §3.8), not noise. The first result sets the status directly: a target
    starts up only if its first probe succeeded.
    """

    status: Status | None = None  # None until the first result
    streak: int = 0  # consecutive results on the other side of up/down from `status`
    rtt: float | None = None  # EWMA of the rtt of non-DOWN results, seconds
    last: ProbeOutcome | None = None
    checked: float | None = None  # wall time of the last result
    since: float | None = None  # wall time of the last flip
    probes: int = 0
    failures: int = 0

    def observe(self, outcome: ProbeOutcome, rise: int, fall: int, now: float) -> bool:
        """Feed one probe outcome; return True when the effective status changes. An
        UNKNOWN outcome (no socket to probe with) is shown as the last probe, no more:
        it counts toward neither rise nor fall, nor as a probe."""
        if outcome.result is ProbeResult.UNKNOWN:
            self.last, self.checked = outcome, now
            return False
        self.probes += 1
        self.last, self.checked = outcome, now
        result = _FROM_PROBE[outcome.result]
        if result is Status.DOWN:
            self.failures += 1
        elif outcome.rtt is not None:
            self.rtt = outcome.rtt if self.rtt is None else self.rtt + RTT_ALPHA * (outcome.rtt - self.rtt)
        new = self._next(result, rise, fall)
        if new is self.status:
            return False
        self.status, self.since, self.streak = new, now, 0
        return True

    def _next(self, result: Status, rise: int, fall: int) -> Status:
        if self.status is None:
            return result
        if (result is Status.DOWN) == (self.status is Status.DOWN):
            self.streak = 0  # agrees with up/down: DOWN stays, UP and DEGRADED swap at once
            return result
        self.streak += 1
        if self.streak < (fall if result is Status.DOWN else rise):
            return self.status
        return result


@dataclass(slots=True)
class AgentState:
    """What a target's agent said last (HAProxy keeps the same per server): the percent
    and the administrative state stick until the agent says otherwise."""

    percent: int | None = None  # None until a reply carried one: 100 %
    admin: Admin = Admin.READY
    last: AgentOutcome | None = None  # the last attempt, reply or failure
    replies: int = 0
    failures: int = 0  # unreachable or garbage

    def observe(self, outcome: AgentOutcome) -> None:
        self.last = outcome
        if outcome.unknown:
            return  # not asked (no descriptor): a maint or a percent stands
        reply = outcome.reply
        if reply is None:
            self.failures += 1
            if self.admin is Admin.MAINT:
                self.admin = Admin.READY  # agent failure leaves the member to its check
            return
        self.replies += 1
        if reply.percent is not None:
            self.percent = reply.percent
        if reply.admin is not None:
            self.admin = reply.admin

    @property
    def tenths(self) -> int:
        return 10 if self.percent is None else quantise(self.percent)


@dataclass(frozen=True, slots=True)
class MemberAgent:
    """A member's agent as the balancer reads it (the best of its targets' agents)."""

    tenths: int  # its base weight is scaled by tenths / 10 (agent.quantise); 10 until told
    drained: bool  # the agent said drain: a standby while up
    maint: bool  # the agent said maint: out of the answers
    detail: str  # the last reply as received, or why there was none
    ok: bool  # the last attempt got a reply

    @property
    def percent(self) -> int:
        return self.tenths * STEP

    def same_weight(self, other: "MemberAgent | None") -> bool:
        """Whether the balancer would weigh the member the same: the publish test."""
        return other is not None and (self.tenths, self.drained, self.maint) == (other.tenths, other.drained,
                                                                                  other.maint)


@dataclass(frozen=True, slots=True)
class MemberWatch:
    """What to probe for one member, known at zone load."""

    check: CheckSpec
    addresses: tuple[str, ...]  # IP addresses to probe
    port: int  # the port to probe on every address
    # An MX exchange outside our zones: resolved with the system resolver every
    # RESOLVE_EVERY seconds, its addresses added to `addresses`; a failure adds none.
    resolve: str | None = None
    weighs_rtt: bool = False  # `weight: auto` under `weighted`: its rtt is its weight, so rtt moves are news


@dataclass(frozen=True, slots=True)
class MemberHealth:
    status: Status
    since: float  # wall time of the member's last status flip
    rtt: float | None  # smoothed rtt of its best non-down target, seconds
    last: ProbeOutcome | None  # the most recent outcome among its targets
    targets: tuple[tuple[str, int, Status], ...]
    agent: MemberAgent | None = None  # None: its check has no agent
    # Within its check's `settle` seconds after a flip between two known statuses (the
    # first result at start is no flip): its RRset keeps the short TTL meanwhile, as
    # while it is down or degraded (ordering.served_ttl).
    settling: bool = False


@dataclass(frozen=True, slots=True)
class HealthView:
    """Immutable health of every watched member, as the query path reads it."""

    members: Mapping[MemberKey, MemberHealth]
    published: int = 0  # views the monitor had published when it made this one (status: `health_publishes`)

    def status(self, key: MemberKey) -> Status:
        """UP for a member that is not watched: no check declared means always up."""
        health = self.members.get(key)
        return Status.UP if health is None else health.status

    def get(self, key: MemberKey) -> MemberHealth | None:
        return self.members.get(key)


EMPTY_HEALTH = HealthView(MappingProxyType({}))


@dataclass(eq=False, slots=True)
class _Target:
    """A target the monitor probes: its state, its loop, and the members that use it."""

    key: TargetKey
    state: TargetState = field(default_factory=TargetState)
    agent: AgentState | None = None  # the check has an agent
    probed: asyncio.Event = field(default_factory=asyncio.Event)  # set after the first attempt
    task: asyncio.Task[None] | None = None
    members: frozenset[MemberKey] = frozenset()


def rtt_moved(published: float | None, current: float | None) -> bool:
    """True when ``current`` differs from the published rtt by more than RTT_PUBLISH_CHANGE
    of it, both raised to RTT_PUBLISH_FLOOR first (the balancer counts faster rtts as
    equal), or one of them is unknown and the other is not. Each publish replans every
    answer of the member's RRset, so jitter that changes no weight must not count."""
    if published is None or current is None:
        return published is not current
    published, current = max(published, RTT_PUBLISH_FLOOR), max(current, RTT_PUBLISH_FLOOR)
    return abs(current - published) > RTT_PUBLISH_CHANGE * published


def answers_differ(published: MemberHealth | None, health: MemberHealth, weighs_rtt: bool) -> bool:
    """Whether ``health`` would change answers compared with the published entry: the
    test for replacing it (status, settling, the agent's weight, an auto weight's rtt)."""
    return (published is None or published.status is not health.status
            or published.settling is not health.settling
            or (health.agent is not None and not health.agent.same_weight(published.agent))
            or (health.agent is None and published.agent is not None)
            or (weighs_rtt and rtt_moved(published.rtt, health.rtt)))


class HealthMonitor:
    """Runs one probe loop per target and publishes a ``HealthView`` when it matters.

    Event-loop thread only; call ``watch``, ``first_round``, ``rewatch`` (the service's
    way in: watch and first round, the view handed back) and ``close`` from one task at
    a time, never two of them at once. ``publish`` is called in the loop thread, synchronously.
    """

    def __init__(self, publish: Callable[[HealthView], None], *, clock: Callable[[], float] = time.time,
                 gap: float = PUBLISH_GAP) -> None:
        self._publish = publish
        self._clock = clock
        self._gap = gap  # PUBLISH_GAP (0: every change at once, for tests that step one probe at a time)
        self._watches: dict[MemberKey, MemberWatch] = {}
        self._targets: dict[TargetKey, _Target] = {}
        self._member_targets: dict[MemberKey, tuple[TargetKey, ...]] = {}
        # the member's own status (None: no target has a result yet) and when it last changed
        self._member_status: dict[MemberKey, tuple[Status | None, float]] = {}
        self._flipped: dict[MemberKey, float] = {}  # wall time of the last flip between known statuses
        self._last_known: dict[MemberKey, Status] = {}  # the last status other than None
        self._settle_timers: dict[MemberKey, asyncio.TimerHandle] = {}  # republish when settling ends
        self._current: dict[MemberKey, MemberHealth] = {}  # every member's latest (view())
        self._served: dict[MemberKey, MemberHealth] = {}  # the entries of the last published view
        self._dirty: set[MemberKey] = set()  # members whose entry is to be replaced at the next publish
        self._published = EMPTY_HEALTH
        self.publishes = 0  # views published (and handed out by rewatch), for status
        self._last_publish = -math.inf  # loop time of the last publish
        self._publish_timer: asyncio.TimerHandle | None = None  # a coalesced publish due
        self._resolved: dict[str, tuple[str, ...]] = {}
        self._resolvers: dict[str, asyncio.Task[None]] = {}
        self._errors: dict[str, tuple[float, int]] = {}  # where → (last logged, suppressed since)
        self._holding = False  # rewatch() running: views wait for the caller's publish

    async def watch(self, members: Mapping[MemberKey, MemberWatch]) -> None:
        """Watch exactly ``members`` from now on. Targets still used keep their state and
        their loop (a zone reload must not reset health); new targets get a loop that
        probes at once; loops of targets no longer used are cancelled and awaited."""
        retired = await self._sync_resolvers(members)
        self._watches = dict(members)  # after the await: probe loops meanwhile see the old, consistent set
        retired += self._reconcile()
        await _finish(retired)
        for gone in set(self._current) - set(self._watches):
            del self._current[gone]
            self._served.pop(gone, None)
            self._dirty.discard(gone)
            self._member_status.pop(gone, None)
            self._flipped.pop(gone, None)
            self._last_known.pop(gone, None)
            timer = self._settle_timers.pop(gone, None)
            if timer is not None:
                timer.cancel()
        self._refresh(self._watches, force=True)

    async def rewatch(self, members: Mapping[MemberKey, MemberWatch]) -> HealthView:
        """``watch(members)`` and its ``first_round()``, publishing nothing meanwhile; the
        view returned is for the caller to publish together with the snapshot these
        members come from. Until then the served snapshot is the old one: a view of the
        new members would drop members it still answers with (an unknown member counts
        as up), so the last published view stays in force. Probes that finish after this
        returns publish as usual."""
        self._holding = True
        try:
            await self.watch(members)
            if members:
                await self.first_round()
        finally:
            self._holding = False
        return self._new_view(self._watches)

    async def first_round(self) -> None:
        """Wait until every target without a result has been probed once (its loop probes
        at once), bounded by the largest of their timeouts plus a small margin."""
        pending = [target for target in self._targets.values() if not target.probed.is_set()]
        if not pending:
            return
        bound = max(target.key[2].timeout for target in pending) + FIRST_ROUND_MARGIN
        try:
            async with asyncio.timeout(bound):
                await asyncio.gather(*(target.probed.wait() for target in pending))
        except TimeoutError:
            missing = sum(1 for target in pending if not target.probed.is_set())
            log.warning("health first round incomplete targets=%d bound=%.1fs; their members count as down "
                        "until probed", missing, bound)
        if self._dirty:
            self._publish_view()  # the round's results at once, not at the end of a gap

    def view(self) -> HealthView:
        """The current health, including outcomes newer than the last published view."""
        return HealthView(MappingProxyType(dict(self._current)))

    def targets(self) -> Mapping[TargetKey, TargetState]:
        """Copies of every target's state, for status output and tests."""
        return MappingProxyType({key: _copy_state(target.state) for key, target in self._targets.items()})

    async def close(self) -> None:
        """Cancel every probe and resolver task and wait for them to end."""
        tasks = [target.task for target in self._targets.values() if target.task is not None]
        tasks += self._resolvers.values()
        for task in tasks:
            task.cancel()
        for timer in self._settle_timers.values():
            timer.cancel()
        self._settle_timers.clear()
        if self._publish_timer is not None:
            self._publish_timer.cancel()
            self._publish_timer = None
        await _finish(tasks)
        self._targets.clear()
        self._resolvers.clear()

    def _reconcile(self) -> list[asyncio.Task[None]]:
        """Derive targets from the watched members: start loops for new targets, cancel
        (and return, to be awaited) the loops of targets nobody uses any more."""
        wanted: dict[TargetKey, set[MemberKey]] = {}
        self._member_targets = {}
        for key, watch in self._watches.items():
            addresses = dict.fromkeys(watch.addresses + self._resolved.get(watch.resolve or "", ()))
            targets = tuple((address, watch.port, watch.check) for address in addresses)
            self._member_targets[key] = targets
            for target_key in targets:
                wanted.setdefault(target_key, set()).add(key)
        retired = []
        for target_key in [target_key for target_key in self._targets if target_key not in wanted]:
            target = self._targets.pop(target_key)
            if target.task is not None:
                target.task.cancel()
                retired.append(target.task)
        for target_key, members in wanted.items():
            target = self._targets.get(target_key)
            if target is None:
                host, port, check = target_key
                target = self._targets[target_key] = _Target(target_key,
                                                             agent=None if check.agent is None else AgentState())
                target.task = asyncio.get_running_loop().create_task(
                    self._probe_loop(target), name=f"health probe {check.kind.value} {host} {port}")
            target.members = frozenset(members)
        return retired

    async def _probe_loop(self, target: _Target) -> None:
        """Probe, observe, sleep, forever (until cancelled). An error is logged, rate-limited,
        and the loop goes on: one bad target must not stop the others' health."""
        host, port, check = target.key
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if check.agent is None:
                    self._observe(target, await probe(check, host, port))
                else:  # beside the probe, on its schedule and within its timeout (HAProxy's agent-inter)
                    outcome, agent = await asyncio.gather(probe(check, host, port),
                                                          agent_reply(host, check.agent.port, check.timeout))
                    self._observe(target, outcome, agent)
            except Exception as error:  # noqa: BLE001 - the loop must survive anything
                self._log_error(f"probe {host} {port} {check.kind.value}", error)
            target.probed.set()
            # A fixed cadence: probes start every `interval`, however long one took, so a
            # member that stops answering is down within interval x fall + timeout.
            elapsed = loop.time() - started
            await asyncio.sleep(max(check.interval - elapsed, MIN_INTERVAL))

    def _observe(self, target: _Target, outcome: ProbeOutcome, agent: AgentOutcome | None = None) -> None:
        host, port, check = target.key
        if agent is not None and target.agent is not None:
            outcome = self._observe_agent(target, target.agent, outcome, agent)
        target.state.observe(outcome, check.rise, check.fall, self._clock())
        self._refresh(target.members)

    def _observe_agent(self, target: _Target, state: AgentState, outcome: ProbeOutcome,
                       agent: AgentOutcome) -> ProbeOutcome:
        """Feed the agent's reply to its state; the probe outcome the check's state
        machine sees (an agent's ``down`` makes a passing probe a failure)."""
        host, port, check = target.key
        assert check.agent is not None
        before = (state.tenths, state.admin)
        state.observe(agent)
        if agent.reply is None and not agent.unknown:  # unknown: logged by base/descriptors.py
            self._log_error(f"agent {host} {check.agent.port}", agent.detail,
                            "the member is left to its check, at its last agent weight")
        elif (state.tenths, state.admin) != before or state.replies == 1:
            log.info('health agent address=%s port=%d reply="%s" weight=%d%% state=%s', host, check.agent.port,
                     agent.detail.replace('"', "'"), state.tenths * STEP, state.admin.value)
        if agent.reply is not None and agent.reply.down and outcome.result is not ProbeResult.DOWN:
            return ProbeOutcome(ProbeResult.DOWN, None, f"agent says down: {agent.detail}"[:160])
        return outcome

    def _refresh(self, keys: Iterable[MemberKey], *, force: bool = False) -> None:
        """Recompute the given members; log their flips; mark those whose answers would
        change (``answers_differ`` from the published entry) and publish them, now or at
        the end of the gap (``PUBLISH_GAP``); ``force`` publishes now."""
        for key in keys:
            watch = self._watches.get(key)
            if watch is None:
                continue  # a probe finished for a member removed meanwhile
            health, flipped = self._member_health(key)
            self._current[key] = health
            if flipped or answers_differ(self._served.get(key), health, watch.weighs_rtt):
                self._dirty.add(key)
        if force:
            self._publish_view()
        elif self._dirty:
            self._publish_soon()

    def _publish_soon(self) -> None:
        """Publish now if the last view is PUBLISH_GAP old, else once it is (one timer)."""
        if self._holding or self._publish_timer is not None:
            return  # rewatch() hands its view to the caller; a publish is due already
        loop = asyncio.get_running_loop()
        wait = self._last_publish + self._gap - loop.time()
        if wait <= 0:
            self._publish_view()
        else:
            self._publish_timer = loop.call_later(wait, self._publish_due)

    def _publish_due(self) -> None:
        self._publish_timer = None
        if self._dirty:
            self._publish_view()

    def _member_health(self, key: MemberKey) -> tuple[MemberHealth, bool]:
        """The member's health from its targets' states, and whether its status flipped."""
        targets = [self._targets[target_key] for target_key in self._member_targets[key]]
        states = [(target.key, target.state) for target in targets]
        known = [state for _, state in states if state.status is not None]
        status: Status | None = Status.DOWN if not states else None
        if known:
            status = max((_effective(target) for target in targets if target.state.status is not None),
                         key=_RANK.__getitem__)
        previous, since = self._member_status.get(key, (None, self._clock()))
        flipped = status is not previous
        if flipped:
            since = self._clock()
            self._member_status[key] = (status, since)
            if status is not None:
                self._log_flip(key, status, previous, known)
                # A reload that changes a check's probe fields gives the member new targets
                # with no result yet (None): the status before that gap is what it flips from.
                before = previous if previous is not None else self._last_known.get(key)
                if before is not None and before is not status:
                    self._flipped[key] = since
                self._last_known[key] = status
        elif key not in self._member_status:
            self._member_status[key] = (status, since)
        shown = Status.DOWN if status is None else status  # not yet probed: not up
        giving = [target for target in targets if target.state.status is not None and _effective(target) is shown]
        return MemberHealth(shown, since, _best_rtt([target.state for target in giving], shown), _latest(known),
                            tuple((host, port, _effective(target) if target.state.status else Status.DOWN)
                                  for target in targets for (host, port, _) in [target.key]),
                            _member_agent(giving or targets), self._settling(key)), flipped

    def _settling(self, key: MemberKey) -> bool:
        """Whether the member is within its check's ``settle`` seconds after its last
        flip; if so, a timer recomputes it when that ends, so the view (and with it the
        served TTL) changes then, not at the next flip."""
        flipped = self._flipped.get(key)
        if flipped is None:
            return False
        left = flipped + self._watches[key].check.settle - self._clock()
        if left <= 0:
            del self._flipped[key]
            return False
        if key not in self._settle_timers:
            self._settle_timers[key] = asyncio.get_running_loop().call_later(left, self._settle_due, key)
        return True

    def _settle_due(self, key: MemberKey) -> None:
        self._settle_timers.pop(key, None)
        self._refresh([key])  # still settling (the clock moved back)? _settling sets a new timer

    def _log_flip(self, key: MemberKey, status: Status, previous: Status | None, known: list[TargetState]) -> None:
        latest = _latest(known)
        detail = "no addresses" if latest is None else latest.detail
        was = "unknown" if previous is None else previous.value
        level = logging.WARNING if status is Status.DOWN else logging.INFO
        log.log(level, 'health member=%s status=%s was=%s detail="%s"',
                member_key_text(key), status.value, was, detail.replace('"', "'"))

    def _publish_view(self) -> None:
        if self._holding:
            return  # rewatch() hands its view to the caller instead
        if self._publish_timer is not None:
            self._publish_timer.cancel()
            self._publish_timer = None
        view = self._new_view(self._dirty)
        try:
            self._publish(view)
        except Exception as error:  # noqa: BLE001 - a publish bug must not stop probing
            self._log_error("publish", error)

    def _new_view(self, changed: Iterable[MemberKey]) -> HealthView:
        """The next view to publish: the entries of ``changed`` members replaced by their
        latest, the others' kept (the same objects), members no longer watched left out."""
        for key in changed:
            health = self._current.get(key)
            if health is not None:
                self._served[key] = health
        self._dirty.clear()
        for gone in set(self._served) - set(self._current):
            del self._served[gone]
        self.publishes += 1
        self._last_publish = asyncio.get_running_loop().time()
        self._published = HealthView(MappingProxyType(dict(self._served)), self.publishes)
        return self._published

    async def _sync_resolvers(self, members: Mapping[MemberKey, MemberWatch]) -> list[asyncio.Task[None]]:
        """Resolve names that are new (concurrently, bounded) and start their re-resolve
        loops; cancel and return the loops of names no longer used."""
        wanted = {watch.resolve for watch in members.values() if watch.resolve}
        retired = []
        for name in [name for name in self._resolvers if name not in wanted]:
            task = self._resolvers.pop(name)
            task.cancel()
            retired.append(task)
            self._resolved.pop(name, None)
        new = sorted(name for name in wanted if name not in self._resolvers)
        for name, addresses in zip(new, await asyncio.gather(*(self._resolve(name) for name in new))):
            self._resolved[name] = addresses
            self._resolvers[name] = asyncio.get_running_loop().create_task(
                self._resolve_loop(name), name=f"health resolve {name}")
        return retired

    async def _resolve_loop(self, name: str) -> None:
        """Re-resolve ``name`` every RESOLVE_EVERY seconds; a changed address set changes
        the targets (kept targets keep their state)."""
        while True:
            await asyncio.sleep(RESOLVE_EVERY)
            try:
                addresses = await self._resolve(name)
                if addresses != self._resolved.get(name):
                    self._resolved[name] = addresses
                    await _finish(self._reconcile())
                    self._refresh([key for key, watch in self._watches.items() if watch.resolve == name])
            except Exception as error:  # noqa: BLE001 - keep resolving
                self._log_error(f"resolve {name}", error)

    async def _resolve(self, name: str) -> tuple[str, ...]:
        """The name's addresses from the system resolver, or () on any failure (logged)."""
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, TimeoutError) as error:
            self._log_error(f"resolve {name}", error, "its member has no addresses from it")
            return ()
        return tuple(dict.fromkeys(str(info[4][0]) for info in infos))

    def _log_error(self, where: str, error: BaseException | str, next_step: str = "probing goes on") -> None:
        """One line per ``where`` per ERROR_LOG_EVERY seconds, counting the ones left out."""
        now = time.monotonic()
        last, suppressed = self._errors.get(where, (-math.inf, 0))
        if now - last < ERROR_LOG_EVERY:
            self._errors[where] = (last, suppressed + 1)
            return
        self._errors[where] = (now, 0)
        log.error("health error where=%s error=%r suppressed=%d; %s", where, error, suppressed, next_step)


def _effective(target: _Target) -> Status:
    """A target's status for its member: its check's, or DOWN while its agent says maint."""
    if target.agent is not None and target.agent.admin is Admin.MAINT:
        return Status.DOWN
    return target.state.status or Status.DOWN


def _member_agent(targets: list[_Target]) -> MemberAgent | None:
    """The agent of the targets that give a member its status: drained only if all of
    them drain, else the largest weight among those that do not (a member is the best
    of its targets); the detail of the one asked last."""
    agents = [target.agent for target in targets if target.agent is not None]
    if not agents:
        return None
    serving = [agent for agent in agents if agent.admin is Admin.READY]
    drained = [agent for agent in agents if agent.admin is Admin.DRAIN]
    tenths = max(agent.tenths for agent in (serving or drained or agents))
    asked = [target for target in targets if target.agent is not None and target.agent.last is not None]
    newest = max(asked, key=lambda target: target.state.checked or 0.0, default=None)
    last = None if newest is None or newest.agent is None else newest.agent.last
    return MemberAgent(tenths, not serving and bool(drained), all(agent.admin is Admin.MAINT for agent in agents),
                       "not asked yet" if last is None else last.detail, last is not None and last.reply is not None)


def _best_rtt(known: list[TargetState], status: Status) -> float | None:
    """The lowest smoothed rtt among the targets that give the member its status."""
    if status is Status.DOWN:
        return None
    rtts = [state.rtt for state in known if state.status is status and state.rtt is not None]
    return min(rtts, default=None)


def _latest(known: list[TargetState]) -> ProbeOutcome | None:
    newest = max((state for state in known if state.checked is not None),
                 key=lambda state: state.checked or 0.0, default=None)
    return None if newest is None else newest.last


def _copy_state(state: TargetState) -> TargetState:
    return TargetState(state.status, state.streak, state.rtt, state.last, state.checked,
                       state.since, state.probes, state.failures)


async def _finish(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Wait for cancelled tasks to end, so none outlives its owner."""
    tasks = list(tasks)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
