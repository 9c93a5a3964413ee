"""Health state and the monitor.

- ``TargetState``: rise/fall tables (first result sets the state, UP ↔ DEGRADED at once,
  streaks reset), and for any sequence of results agreement with a reference model
  written differently (a sliding window instead of a streak counter); EWMA rtt, counts.
- ``HealthView`` and ``rtt_moved``.
- ``HealthMonitor`` against real FakeSmtp listeners on 127.0.0.1 with short intervals:
  first round (UP, DEGRADED, DOWN, timeouts bounded), a stopped listener going DOWN and a
  restarted one coming back within the rise/fall bounds (published and logged), 421 as
  DEGRADED, shared targets sharing state and probes, ``watch()`` keeping state and tasks,
  a removed target's task cancelled, MX-like members with several addresses or a
  resolved name, ``rewatch()`` holding its view for the caller, no publish without news, a failing publish callback, ``close()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TypeVar

import pytest
from conftest import wait_until
from dnslib import QTYPE
from hypothesis import given
from hypothesis import strategies as st
from smtp_listeners import FakeSmtp

from authdns.base import names
from authdns.zones.balancespec import CheckKind, CheckSpec, MemberKey
from authdns.health.monitor import (
    EMPTY_HEALTH,
    HealthMonitor,
    HealthView,
    MemberHealth,
    MemberWatch,
    Status,
    TargetState,
    rtt_moved,
)
from authdns.health.probes import ProbeOutcome, ProbeResult

T = TypeVar("T")

INTERVAL, TIMEOUT, RISE, FALL = 0.1, 0.5, 2, 2
CHECK = CheckSpec(CheckKind.SMTP, 25, interval=INTERVAL, timeout=TIMEOUT, rise=RISE, fall=FALL)
MARGIN = 1.0  # scheduling slack on a busy test machine
OWNER = names.from_text("example.test.")


def mx(name: str) -> MemberKey:
    return (OWNER, QTYPE.MX, f"{name}.example.test.")


# ---------------------------------------------------------------- TargetState

LETTER = {"U": ProbeResult.UP, "G": ProbeResult.DEGRADED, "D": ProbeResult.DOWN}
STATUS = {"U": Status.UP, "G": Status.DEGRADED, "D": Status.DOWN}


def feed(letters: str, rise: int, fall: int) -> tuple[str, str]:
    """Statuses after each result, and where a flip was reported ("1") or not ("0")."""
    state, seen, flips = TargetState(), "", ""
    for index, letter in enumerate(letters):
        flips += "1" if state.observe(ProbeOutcome(LETTER[letter], 0.01, letter), rise, fall, float(index)) else "0"
        assert state.status is not None
        seen += next(key for key, value in STATUS.items() if value is state.status)
    return seen, flips


@pytest.mark.parametrize(("results", "rise", "fall", "statuses", "flips"), [
    ("U", 2, 2, "U", "1"),  # the first result sets the state directly
    ("D", 2, 2, "D", "1"),  # ... so a member starts up only if its first probe succeeded
    ("G", 2, 2, "G", "1"),
    ("UD", 2, 2, "UU", "10"),
    ("UDD", 2, 2, "UUD", "101"),
    ("UDUD", 2, 2, "UUUU", "1000"),  # a success in between resets the failure streak
    ("UDD", 2, 3, "UUU", "100"),  # fall 3: two failures are not enough
    ("UDDDD", 2, 3, "UUUDD", "10010"),
    ("DU", 2, 2, "DD", "10"),
    ("DUU", 2, 2, "DDU", "101"),
    ("DUDUU", 2, 2, "DDDDU", "10001"),
    ("DUG", 2, 2, "DDG", "101"),  # DEGRADED counts toward rise; the latest result decides
    ("DGU", 2, 2, "DDU", "101"),
    ("UG", 2, 2, "UG", "11"),  # a 421 is an explicit signal: no damping between UP and DEGRADED
    ("GU", 2, 2, "GU", "11"),
    ("GDD", 2, 2, "GGD", "101"),
    ("UGDGDD", 2, 2, "UGGGGD", "110001"),
    ("UDGD", 2, 2, "UUGG", "1010"),
    ("UDUD", 1, 1, "UDUD", "1111"),
    ("UUUDDDUUU", 3, 3, "UUUUUDDDU", "100001001"),
])
def test_rise_fall_table(results: str, rise: int, fall: int, statuses: str, flips: str) -> None:
    assert feed(results, rise, fall) == (statuses, flips)


def reference(letters: str, rise: int, fall: int) -> str:
    """The same rules as a sliding window: leave DOWN when the last ``rise`` results are
    all non-DOWN, enter DOWN when the last ``fall`` are all DOWN, follow UP/DEGRADED."""
    status, seen = "", ""
    for index, letter in enumerate(letters):
        window = letters[max(0, index + 1 - (fall if letter == "D" else rise)):index + 1]
        if not status:
            status = letter
        elif letter == "D" and status != "D":
            if len(window) == fall and set(window) == {"D"}:
                status = "D"
        elif letter != "D" and status == "D":
            if len(window) == rise and "D" not in window:
                status = letter
        elif letter != "D":
            status = letter
        seen += status
    return seen


@given(st.text(alphabet="UGD", max_size=40), st.integers(1, 5), st.integers(1, 5))
def test_state_matches_reference_model(results: str, rise: int, fall: int) -> None:
    assert feed(results, rise, fall)[0] == reference(results, rise, fall)


def test_rtt_is_an_ewma_of_non_down_results_and_counts_are_kept() -> None:
    state = TargetState()
    state.observe(ProbeOutcome(ProbeResult.UP, 0.100, ""), 2, 2, 10.0)
    assert state.rtt == pytest.approx(0.100)
    state.observe(ProbeOutcome(ProbeResult.UP, 0.200, ""), 2, 2, 11.0)
    assert state.rtt == pytest.approx(0.130)  # 0.1 + 0.3 * (0.2 - 0.1)
    state.observe(ProbeOutcome(ProbeResult.DOWN, 5.0, "554 greeting"), 2, 2, 12.0)
    assert state.rtt == pytest.approx(0.130)  # a failure says nothing about speed
    state.observe(ProbeOutcome(ProbeResult.DEGRADED, 0.030, "421 greeting"), 2, 2, 13.0)
    assert state.rtt == pytest.approx(0.100)  # 0.13 + 0.3 * (0.03 - 0.13)
    assert (state.probes, state.failures) == (4, 1)
    assert state.since == 13.0 and state.checked == 13.0  # flipped to DEGRADED at 13
    assert state.last == ProbeOutcome(ProbeResult.DEGRADED, 0.030, "421 greeting")


def test_rtt_moved_needs_twenty_percent_and_a_millisecond() -> None:
    assert rtt_moved(None, 0.01) and rtt_moved(0.01, None)
    assert not rtt_moved(None, None)
    assert not rtt_moved(0.100, 0.119) and rtt_moved(0.100, 0.121) and rtt_moved(0.100, 0.079)
    assert not rtt_moved(0.0010, 0.0019)  # sub-millisecond jitter on a fast network is no news


def test_view_reports_unwatched_members_up() -> None:
    assert EMPTY_HEALTH.status(mx("anything")) is Status.UP
    assert EMPTY_HEALTH.get(mx("anything")) is None
    down = MemberHealth(Status.DOWN, 1.0, None, None, ())
    view = HealthView({mx("a"): down})
    assert view.status(mx("a")) is Status.DOWN and view.get(mx("a")) is down
    assert view.status(mx("b")) is Status.UP


# ---------------------------------------------------------------- HealthMonitor

class Published:
    """The publish callback: keeps every view (appends are atomic, so a polling thread
    may read them)."""

    def __init__(self) -> None:
        self.views: list[HealthView] = []

    def __call__(self, view: HealthView) -> None:
        self.views.append(view)

    def status(self, key: MemberKey) -> Status | None:
        return self.views[-1].status(key) if self.views else None


async def until(check: Callable[[], T | None], timeout: float) -> T:
    """``wait_until`` in a worker thread, so the event loop keeps probing meanwhile."""
    return await asyncio.to_thread(wait_until, check, timeout)


def published_status(published: Published, key: MemberKey, wanted: Status) -> Callable[[], bool | None]:
    def check() -> bool | None:
        return True if published.status(key) is wanted else None
    check.__name__ = f"{key[2]} published {wanted.value}"
    return check


def watch(fake: FakeSmtp, *addresses: str, check: CheckSpec = CHECK) -> MemberWatch:
    return MemberWatch(check, addresses or (fake.host,), fake.port)


def probe_tasks() -> set[asyncio.Task]:
    return {task for task in asyncio.all_tasks() if task.get_name().startswith("health probe")}


@pytest.fixture
def fakes() -> Iterator[Callable[..., FakeSmtp]]:
    """Start FakeSmtp listeners on demand; every one is stopped afterwards."""
    with ExitStack() as stack:
        yield lambda mode="ok", **options: stack.enter_context(FakeSmtp(mode, **options))


def test_first_round_sets_up_degraded_and_down(fakes: Callable[..., FakeSmtp]) -> None:
    ok, busy, reject, silent, stopped = fakes("ok"), fakes("busy"), fakes("reject"), fakes("silent"), fakes("ok")
    stopped.stop()
    members = {mx("ok"): watch(ok), mx("busy"): watch(busy), mx("reject"): watch(reject),
               mx("silent"): watch(silent), mx("stopped"): watch(stopped)}
    published = Published()

    async def main() -> float:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch(members)
            started = time.monotonic()
            await monitor.first_round()
            return time.monotonic() - started
        finally:
            await monitor.close()

    elapsed = asyncio.run(main())
    assert elapsed < TIMEOUT + 0.5 + MARGIN  # bounded by the largest timeout, silent included
    view = published.views[-1]
    assert {key[2].split(".")[0]: health.status for key, health in view.members.items()} == {
        "ok": Status.UP, "busy": Status.DEGRADED, "reject": Status.DOWN, "silent": Status.DOWN,
        "stopped": Status.DOWN}
    assert view.members[mx("ok")].rtt is not None and view.members[mx("ok")].rtt > 0
    assert view.members[mx("busy")].rtt is not None  # DEGRADED still has a speed
    assert view.members[mx("reject")].rtt is None
    assert view.members[mx("stopped")].last == ProbeOutcome(ProbeResult.DOWN, None, "connection refused")
    assert view.members[mx("ok")].targets == (("127.0.0.1", ok.port, Status.UP),)


def test_stopped_listener_goes_down_and_comes_back(fakes: Callable[..., FakeSmtp],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authdns.health")
    fake = fakes("ok")
    key, published = mx("mx1"), Published()

    async def main() -> tuple[float, float]:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch({key: watch(fake)})
            await monitor.first_round()
            assert published.status(key) is Status.UP
            started = time.monotonic()
            fake.stop()
            await until(published_status(published, key, Status.DOWN), INTERVAL * FALL + TIMEOUT + MARGIN)
            went_down = time.monotonic() - started
            started = time.monotonic()
            fake.restart()
            await until(published_status(published, key, Status.UP), INTERVAL * RISE + MARGIN)
            return went_down, time.monotonic() - started
        finally:
            await monitor.close()

    went_down, came_back = asyncio.run(main())
    assert went_down >= INTERVAL * (FALL - 1)  # fall: one failure is not enough
    assert came_back >= INTERVAL * (RISE - 1)  # rise: one success is not enough
    lines = [record.getMessage() for record in caplog.records if record.name == "authdns.health"]
    assert lines == [
        'health member=example.test. MX mx1.example.test. status=up was=unknown detail="'
        + lines[0].split('detail="')[1],
        'health member=example.test. MX mx1.example.test. status=down was=up detail="connection refused"',
        'health member=example.test. MX mx1.example.test. status=up was=down detail="'
        + lines[2].split('detail="')[1],
    ]
    assert lines[2].endswith(' ms"')  # detail="220 greeting in 0.8 ms"


def test_421_is_degraded_at_once_and_published(fakes: Callable[..., FakeSmtp]) -> None:
    fake = fakes("ok")
    key, published = mx("mx1"), Published()

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch({key: watch(fake)})
            await monitor.first_round()
            fake.mode = "busy"
            await until(published_status(published, key, Status.DEGRADED), INTERVAL + TIMEOUT + MARGIN)
            assert monitor.view().get(key).last.detail == "421 greeting: too busy"
            fake.mode = "ok"
            await until(published_status(published, key, Status.UP), INTERVAL + TIMEOUT + MARGIN)
        finally:
            await monitor.close()

    asyncio.run(main())


def test_members_sharing_a_target_share_state_and_probes(fakes: Callable[..., FakeSmtp]) -> None:
    fake = fakes("ok")
    exchange, address = mx("mx1"), (OWNER, QTYPE.A, "127.0.0.1")
    # equal checks with different names are one check: the name is not part of equality
    renamed = CheckSpec(CheckKind.SMTP, 25, interval=INTERVAL, timeout=TIMEOUT, rise=RISE, fall=FALL, name="other")
    published = Published()

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch({exchange: watch(fake), address: watch(fake, check=renamed)})
            await monitor.first_round()
            assert list(monitor.targets()) == [("127.0.0.1", fake.port, CHECK)]
            assert len(probe_tasks()) == 1
            view = published.views[-1]
            assert view.status(exchange) is view.status(address) is Status.UP
            assert view.get(exchange).targets == view.get(address).targets
            assert fake.connections == 1  # one probe served both members
        finally:
            await monitor.close()

    asyncio.run(main())


def test_watch_again_keeps_state_and_tasks_and_cancels_removed_targets(fakes: Callable[..., FakeSmtp]) -> None:
    first, second = fakes("ok"), fakes("busy")
    members = {mx("mx1"): watch(first), mx("mx2"): watch(second)}
    published = Published()

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch(members)
            await monitor.first_round()
            await until(lambda: True if all(state.probes >= 3 for state in monitor.targets().values()) else None,
                        10 * INTERVAL + MARGIN)
            tasks, before = probe_tasks(), monitor.targets()
            since = {key: health.since for key, health in monitor.view().members.items()}
            await monitor.watch(dict(members))  # a reload with the same targets
            assert probe_tasks() == tasks  # the same loops, not restarted
            after = monitor.targets()
            for target, state in after.items():
                assert state.status is before[target].status and state.since == before[target].since
                assert state.probes >= before[target].probes  # counting on, not reset
            assert {key: health.since for key, health in published.views[-1].members.items()} == since
            assert published.views[-1].status(mx("mx2")) is Status.DEGRADED
            gone = next(task for task in tasks if str(second.port) in task.get_name())
            await monitor.watch({mx("mx1"): watch(first)})
            assert gone.cancelled() and probe_tasks() == tasks - {gone}
            assert list(monitor.targets()) == [("127.0.0.1", first.port, CHECK)]
            assert set(published.views[-1].members) == {mx("mx1")}
        finally:
            await monitor.close()
        assert probe_tasks() == set()  # close() leaves no task behind

    asyncio.run(main())


def test_new_target_on_reload_is_probed_by_first_round(fakes: Callable[..., FakeSmtp]) -> None:
    first, second = fakes("ok"), fakes("ok")
    published = Published()

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch({mx("mx1"): watch(first)})
            await monitor.first_round()
            await monitor.watch({mx("mx1"): watch(first), mx("mx2"): watch(second)})
            assert published.views[-1].status(mx("mx2")) is Status.DOWN  # not probed yet: not up
            await monitor.first_round()
            assert published.views[-1].status(mx("mx2")) is Status.UP
            assert published.views[-1].status(mx("mx1")) is Status.UP
        finally:
            await monitor.close()

    asyncio.run(main())


def test_rewatch_publishes_nothing_until_it_hands_back_its_view(fakes: Callable[..., FakeSmtp]) -> None:
    """A reload's rewatch: while the new members are probed the old snapshot still serves,
    so the monitor's published view must stay the old one (a view of the new members
    would drop members the old snapshot answers with); the view comes back to the caller,
    and probes after it publish as usual."""
    first, second = fakes("ok"), fakes("ok")
    published = Published()

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            view = await monitor.rewatch({mx("mx1"): watch(first)})
            assert published.views == [] and view.status(mx("mx1")) is Status.UP
            published(view)  # what the service does, with the snapshot
            view = await monitor.rewatch({mx("mx2"): watch(second)})
            assert len(published.views) == 1 and mx("mx2") not in published.views[-1].members
            assert view.status(mx("mx2")) is Status.UP and mx("mx1") not in view.members
            second.stop()
            await until(published_status(published, mx("mx2"), Status.DOWN), INTERVAL * FALL + TIMEOUT + MARGIN)
        finally:
            await monitor.close()

    asyncio.run(main())


def test_exchange_with_two_addresses_is_up_while_one_is(fakes: Callable[..., FakeSmtp]) -> None:
    fake = fakes("ok")
    key, published = mx("mx1"), Published()

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            # 127.0.0.2 is loopback too, but nothing listens there on this port
            await monitor.watch({key: watch(fake, "127.0.0.1", "127.0.0.2")})
            await monitor.first_round()
            health = published.views[-1].get(key)
            assert health.status is Status.UP
            assert health.targets == (("127.0.0.1", fake.port, Status.UP), ("127.0.0.2", fake.port, Status.DOWN))
            fake.stop()
            await until(published_status(published, key, Status.DOWN), INTERVAL * FALL + TIMEOUT + MARGIN)
        finally:
            await monitor.close()

    asyncio.run(main())


def test_resolved_names_and_members_without_addresses(fakes: Callable[..., FakeSmtp]) -> None:
    fake = fakes("ok")
    published = Published()
    members = {
        mx("resolved"): MemberWatch(CHECK, (), fake.port, resolve="localhost"),
        mx("unresolvable"): MemberWatch(CHECK, (), fake.port, resolve="bad..name"),
        mx("static"): MemberWatch(CHECK, ("127.0.0.1",), fake.port, resolve="bad..name"),
        mx("nothing"): MemberWatch(CHECK, (), fake.port),
    }

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch(members)
            await monitor.first_round()
        finally:
            await monitor.close()

    asyncio.run(main())
    view = published.views[-1]
    assert view.status(mx("resolved")) is Status.UP
    assert ("127.0.0.1", fake.port, Status.UP) in view.get(mx("resolved")).targets
    assert view.status(mx("unresolvable")) is Status.DOWN and view.get(mx("unresolvable")).targets == ()
    assert view.status(mx("static")) is Status.UP  # a failed resolution adds nothing, removes nothing
    assert view.status(mx("nothing")) is Status.DOWN


def test_no_publish_without_news(fakes: Callable[..., FakeSmtp]) -> None:
    # a 100 ms greeting: scheduling jitter stays far below the 20 % that counts as news
    fake = fakes("slow", delay=0.1)
    key, published = mx("mx1"), Published()

    async def main() -> None:
        monitor = HealthMonitor(published)
        try:
            await monitor.watch({key: watch(fake)})
            await monitor.first_round()
            count = len(published.views)
            await until(lambda: True if monitor.targets()[("127.0.0.1", fake.port, CHECK)].probes >= 5 else None,
                        5 * (INTERVAL + 0.1) + MARGIN)
            assert len(published.views) == count  # four more probes, no flip: nothing published
            assert published.views[-1].get(key).rtt >= 0.1
        finally:
            await monitor.close()

    asyncio.run(main())


def test_a_failing_publish_is_logged_once_and_probing_goes_on(fakes: Callable[..., FakeSmtp],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    fake = fakes("ok")
    key = mx("mx1")
    calls: list[HealthView] = []

    def broken(view: HealthView) -> None:
        calls.append(view)
        raise RuntimeError("publish is broken")

    async def main() -> None:
        monitor = HealthMonitor(broken, gap=0)  # every change tried at once: the test counts them
        try:
            await monitor.watch({key: watch(fake)})
            await monitor.first_round()
            fake.stop()
            await until(lambda: True if monitor.view().status(key) is Status.DOWN else None,
                        INTERVAL * FALL + TIMEOUT + MARGIN)
        finally:
            await monitor.close()

    asyncio.run(main())
    assert len(calls) >= 3  # watch, the first result, the flip: each tried to publish
    errors = [record for record in caplog.records if "where=publish" in record.getMessage()]
    assert len(errors) == 1  # rate-limited: one line, the rest counted


def test_settling_ends_by_its_timer_and_survives_a_reload_gap(fakes: Callable[..., FakeSmtp]) -> None:
    """A flip makes the member settle for ``settle`` seconds; the monitor's timer ends it
    (the probes here come once a minute, so nothing else can), close() cancels the timers,
    and a reload that changes the check's probe fields (new targets, no result yet) still
    counts the first result after it as a flip from the status before."""
    fake = fakes("ok")
    key, published = mx("mx1"), Published()
    slow = CheckSpec(CheckKind.SMTP, 25, interval=60.0, timeout=TIMEOUT, rise=1, fall=1, settle=0.4)

    def settling(wanted: bool) -> Callable[[], bool | None]:
        def check() -> bool | None:
            view = published.views[-1] if published.views else None
            return True if view is not None and view.members[key].settling is wanted else None
        check.__name__ = f"settling is {wanted}"
        return check

    async def main() -> None:
        monitor = HealthMonitor(published, gap=0)  # outcomes fed one by one, each view checked
        try:
            await monitor.watch({key: watch(fake, check=slow)})
            await monitor.first_round()
            assert published.views[-1].members[key].settling is False  # the first result is no flip
            (target,) = monitor._targets.values()
            monitor._observe(target, ProbeOutcome(ProbeResult.DOWN, None, "fed"))
            monitor._observe(target, ProbeOutcome(ProbeResult.UP, 0.01, "fed"))
            assert published.status(key) is Status.UP and published.views[-1].members[key].settling
            await until(settling(False), 0.4 + MARGIN)  # the timer, not a probe
            monitor._observe(target, ProbeOutcome(ProbeResult.DOWN, None, "fed"))
            assert published.status(key) is Status.DOWN
            await until(settling(False), 0.4 + MARGIN)  # down, settled: the reload comes long after the flip
            other = CheckSpec(CheckKind.SMTP, 25, interval=61.0, timeout=TIMEOUT, rise=1, fall=1, settle=0.4)
            view = await monitor.rewatch({key: watch(fake, check=other)})
            assert view.members[key].status is Status.UP and view.members[key].settling, "down -> up across reload"
        finally:
            await monitor.close()
        assert not monitor._settle_timers

    asyncio.run(main())


def test_views_are_coalesced_and_keep_unchanged_entries(fakes: Callable[..., FakeSmtp]) -> None:
    """Flips of many members within PUBLISH_GAP make one view at its end, not one per
    probe; a member whose answers did not change keeps its entry (the same object,
    which the worker channel leaves out), though its latest probe is in view()."""
    fake = fakes("ok")
    keys = [mx(f"mx{index}") for index in range(40)]
    published = Published()
    slow = CheckSpec(CheckKind.SMTP, 25, interval=60.0, timeout=TIMEOUT, rise=1, fall=1)

    async def main() -> None:
        monitor = HealthMonitor(published, gap=0.3)
        try:
            await monitor.watch({key: MemberWatch(slow, (f"127.0.0.{index + 1}",), fake.port)
                                 for index, key in enumerate(keys)})
            await monitor.first_round()
            before = len(published.views)
            first = published.views[-1]
            by_member = {next(iter(target.members)): target for target in monitor._targets.values()}
            assert published.status(keys[0]) is Status.UP and published.status(keys[1]) is Status.DOWN  # refused
            for key in keys[1:21]:  # 20 flips at once, and probes that change nothing
                monitor._observe(by_member[key], ProbeOutcome(ProbeResult.UP, 0.002, "fed"))
                monitor._observe(by_member[keys[0]], ProbeOutcome(ProbeResult.UP, 0.002, "fed"))
            assert len(published.views) <= before + 1, "at most one at once, the rest wait for the gap"
            await until(lambda: True if all(published.status(key) is Status.UP for key in keys[1:21])
                        else None, 2.0)
            assert len(published.views) <= before + 2
            last = published.views[-1]
            assert last.published == monitor.publishes and last.published > first.published
            unchanged = [key for key in keys if last.members[key] is first.members[key]]
            assert set(unchanged) >= {keys[0], *keys[21:]}, "no news, same entry"
            assert monitor.view().get(keys[0]).last.detail == "fed", "the latest probe is still shown"
        finally:
            await monitor.close()

    asyncio.run(main())
