"""Agent checks below the server: the reply parser, the probe that asks an agent over
real loopback sockets, the monitor's agent state, and what the balancer makes of it.

- ``parse_reply``: percents (decimals, clamp above 100), the sticky words, down words,
  several words with commas/spaces/tabs, mixed case, ``#`` descriptions, ``maxconn:N``
  and unknown words beside known ones; garbage (empty, blank, no known word, not ASCII,
  too long); ``quantise`` to 10 % steps.
- ``agent_reply`` against raw asyncio servers: a line with and without a newline, CRLF,
  refused, silent (timeout), a line longer than the stream limit, garbage.
- ``AgentState``: percent and drain stick, maint lapses on a failed agent, ``up`` clears.
- The balancer: percents scale weights (shares exact over a cycle), gcd keeps cycles
  short, drain → standby, maint → out, the shown weight in zone units.
- ``HealthMonitor`` with a loopback agent: a view is published when the rounded weight,
  drain or status changes, not for the same weight again; ``down`` waits for ``fall``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import MappingProxyType

import pytest
from dnslib import QTYPE
from hypothesis import given
from hypothesis import strategies as st

from authdns.balancing.ordering import Balancer
from authdns.balancing.overrides import EMPTY_OVERRIDES
from authdns.base import names
from authdns.health.agent import MAX_REPLY, Admin, AgentGarbage, AgentOutcome, AgentReply, parse_reply, quantise
from authdns.health.monitor import AgentState, HealthView, MemberAgent, MemberHealth, Status
from authdns.health.probes import agent_reply
from support import load_text

LOOPBACK = "127.0.0.1"


@pytest.mark.parametrize("line,reply", [
    (b"75%", AgentReply(percent=75)),
    (b"  75%  ", AgentReply(percent=75)),
    (b"0%", AgentReply(percent=0)),
    (b"150%", AgentReply(percent=100)),  # the agent scales down, never above the configured weight
    (b"33.5%", AgentReply(percent=34)),
    (b"33.4%", AgentReply(percent=33)),
    (b"up", AgentReply(admin=Admin.READY)),
    (b"READY", AgentReply(admin=Admin.READY)),
    (b"Drain", AgentReply(admin=Admin.DRAIN)),
    (b"MAINT", AgentReply(admin=Admin.MAINT)),
    (b"down", AgentReply(down=True)),
    (b"Fail", AgentReply(down=True)),
    (b"stopped#disk full", AgentReply(down=True, description="disk full")),
    (b"75% up", AgentReply(percent=75, admin=Admin.READY)),
    (b"up,75%", AgentReply(percent=75, admin=Admin.READY)),
    (b"ready, 50%,\tmaxconn:30", AgentReply(percent=50, admin=Admin.READY)),
    (b"drain 20%", AgentReply(percent=20, admin=Admin.DRAIN)),
    (b"down up", AgentReply(admin=Admin.READY)),  # the last word wins
    (b"up down", AgentReply(admin=Admin.READY, down=True)),
    (b"50% 60%", AgentReply(percent=60)),
    (b"load 80% please", AgentReply(percent=80)),  # unknown words beside known ones are ignored
    (b"maxconn:10", AgentReply()),
    (b"7 5%", AgentReply(percent=5)),  # "7" is an unknown word, "5%" a known one
    (b"up #queue 12 \x01", AgentReply(admin=Admin.READY, description="queue 12 \\x01")),
])
def test_replies(line: bytes, reply: AgentReply) -> None:
    assert parse_reply(line) == reply


@pytest.mark.parametrize("line,why", [
    (b"", "empty reply"),
    (b"   \t ", "empty reply"),
    (b"# only a comment", "empty reply"),
    (b"hello world", "no agent word in reply 'hello world'"),
    (b"75", "no agent word"),
    (b"-5%", "no agent word"),
    (b"%", "no agent word"),
    (b"\xff\xfe up", "not ASCII"),
    (b"up " * 200, f"longer than {MAX_REPLY} octets"),
])
def test_garbage(line: bytes, why: str) -> None:
    with pytest.raises(AgentGarbage, match=why):
        parse_reply(line)


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_are_garbage(raw: bytes) -> None:
    try:
        reply = parse_reply(raw)
    except AgentGarbage:
        return
    assert reply.percent is None or 0 <= reply.percent <= 100
    assert len(reply.description) <= 80


@pytest.mark.parametrize("percent,tenths", [(0, 0), (1, 1), (4, 1), (14, 1), (15, 2), (70, 7), (74, 7), (75, 8),
                                            (95, 10), (100, 10)])
def test_quantise(percent: int, tenths: int) -> None:
    assert quantise(percent) == tenths


# -- asking an agent over loopback --------------------------------------------------------


def ask(reply: bytes | None, *, close: bool = True, timeout: float = 1.0) -> AgentOutcome:
    """Run a one-shot agent on loopback that writes ``reply`` (None: says nothing) and ask it."""
    async def scenario() -> AgentOutcome:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if reply is not None:
                writer.write(reply)
                await writer.drain()
            if close:
                writer.close()
            else:
                await asyncio.sleep(timeout * 3)
        server = await asyncio.start_server(handler, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await agent_reply(LOOPBACK, port, timeout)
        finally:
            server.close()
    return asyncio.run(scenario())


def test_agent_reply_over_loopback() -> None:
    assert ask(b"75% up\n") == AgentOutcome(AgentReply(75, Admin.READY), "75% up")
    assert ask(b"drain\r\n").reply == AgentReply(admin=Admin.DRAIN)
    assert ask(b"40%").reply == AgentReply(percent=40), "a line ended by the close counts"
    assert ask(b"60%\nsecond line ignored\n").reply == AgentReply(percent=60)


def test_agent_failures_are_outcomes_without_a_reply() -> None:
    silent = ask(None, close=False, timeout=0.2)
    assert silent.reply is None and "not within 0.2 s" in silent.detail
    empty = ask(b"")
    assert empty.reply is None and "empty reply" in empty.detail
    garbage = ask(b"hello\n")
    assert garbage.reply is None and "garbage" in garbage.detail
    huge = ask(b"9" * 70000 + b"%\n")
    assert huge.reply is None and "longer than" in huge.detail

    async def refused() -> AgentOutcome:
        server = await asyncio.start_server(lambda r, w: None, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return await agent_reply(LOOPBACK, port, 0.5)
    gone = asyncio.run(refused())
    assert gone.reply is None and "refused" in gone.detail


# -- the monitor's state of one agent -------------------------------------------------------


def outcome(line: bytes | None) -> AgentOutcome:
    return AgentOutcome(None if line is None else parse_reply(line), "x")


def test_agent_state_sticks_and_lapses() -> None:
    state = AgentState()
    assert (state.tenths, state.admin) == (10, Admin.READY), "100 % until told"
    state.observe(outcome(b"70%"))
    state.observe(outcome(b"up"))
    assert (state.tenths, state.admin) == (7, Admin.READY), "a reply without a percent keeps the last one"
    state.observe(outcome(b"drain"))
    state.observe(outcome(None))
    assert (state.tenths, state.admin) == (7, Admin.DRAIN), "a failed agent keeps percent and drain"
    state.observe(outcome(b"maint"))
    assert state.admin is Admin.MAINT
    state.observe(outcome(None))
    assert state.admin is Admin.READY, "maint lapses: a failed agent leaves the member to its check"
    state.observe(outcome(b"maint 20%"))
    state.observe(outcome(b"ready"))
    assert (state.tenths, state.admin, state.replies, state.failures) == (2, Admin.READY, 6, 2)


# -- what the balancer makes of it ------------------------------------------------------------

ZONE = """
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  w:
    MX:
      policy: weighted
      check: {kind: smtp, agent: 4711}
      records:
        - {preference: 10, exchange: a, weight: 3}
        - {preference: 10, exchange: b, weight: 1}
        - {preference: 10, exchange: c, weight: 1}
  rr:
    MX:
      check: {kind: smtp, agent: 4711}
      records: ['10 a', '10 b']
  a: {A: 192.0.2.11}
  b: {A: 192.0.2.12}
  c: {A: 192.0.2.13}
"""


@pytest.fixture
def zone(tmp_path: Path):
    _, loaded, problems = load_text(tmp_path, "o.test", ZONE)
    assert loaded is not None, problems
    return loaded


def rrset(zone, owner: str):
    return zone.nodes[names.from_text(f"{owner}.o.test.")].rrsets[QTYPE.MX]


def view(owner: str, **agents: tuple[Status, int, bool, bool] | int) -> HealthView:
    members = {}
    for member, value in agents.items():
        status, tenths, drained, maint = value if isinstance(value, tuple) else (Status.UP, value, False, False)
        agent = MemberAgent(tenths, drained, maint, f"{tenths * 10}%", True)
        key = (names.from_text(f"{owner}.o.test."), QTYPE.MX, f"{member}.o.test.")
        members[key] = MemberHealth(status, 0.0, 0.001, None, (), agent)
    return HealthView(MappingProxyType(members))


def firsts(balancer: Balancer, rrset_, health: HealthView, count: int) -> Counter:
    result = Counter()
    for _ in range(count):
        plan = balancer.plan(rrset_, health, EMPTY_OVERRIDES)
        result[rrset_.rdatas[plan.order[0]].label.label[0].decode()] += 1
    return result


def test_percent_scales_weights_exactly_over_a_cycle(zone) -> None:
    balancer = Balancer()
    # 3 at 70 %, 1 at 100 %, 1 at 50 %: 21 : 10 : 5 in tenths, one cycle is 36 answers
    health = view("w", a=7, b=10, c=5)
    assert firsts(balancer, rrset(zone, "w"), health, 360) == {"a": 210, "b": 100, "c": 50}
    plan = balancer.peek(rrset(zone, "w"), health, EMPTY_OVERRIDES)
    shown = {member.text.split(".")[0]: float(member.effective * member.scale) for member in plan.members}
    assert shown == {"a": 2.1, "b": 1.0, "c": 0.5}, "status shows zone units"
    assert "70 % of its weight" in next(m.reason for m in plan.members if m.text.startswith("a."))


def test_gcd_keeps_the_cycle_of_full_agents_as_the_zone_says(zone) -> None:
    balancer = Balancer()
    plan = balancer.peek(rrset(zone, "w"), view("w", a=10, b=10, c=10), EMPTY_OVERRIDES)
    assert sorted(member.effective for member in plan.members) == [1, 1, 3], "3:1:1, not 120:40:40"
    plan = balancer.peek(rrset(zone, "w"), view("w", a=5, b=5, c=5), EMPTY_OVERRIDES)
    assert sorted(member.effective for member in plan.members) == [1, 1, 3], "all at 50 %: the same shares"


def test_percent_steers_round_robin_too(zone) -> None:
    balancer = Balancer()
    assert firsts(balancer, rrset(zone, "rr"), view("rr", a=10, b=5), 300) == {"a": 200, "b": 100}


def test_drain_is_a_standby_and_maint_is_out(zone) -> None:
    balancer = Balancer()
    drained = view("w", a=(Status.UP, 10, True, False))
    counted = firsts(balancer, rrset(zone, "w"), drained, 20)
    assert counted == {"b": 10, "c": 10}
    plan = balancer.peek(rrset(zone, "w"), drained, EMPTY_OVERRIDES)
    a = next(member for member in plan.members if member.text.startswith("a."))
    assert not a.included and "drained by its agent" in a.reason
    zero = view("w", a=0)  # 0 % is a drain too
    assert "a" not in firsts(balancer, rrset(zone, "w"), zero, 20)
    every = view("w", a=(Status.UP, 10, True, False), b=(Status.UP, 10, True, False), c=(Status.DOWN, 10, False, True))
    assert firsts(balancer, rrset(zone, "w"), every, 20) == {"a": 10, "b": 10}, "standbys when nothing else is up"
    plan = balancer.peek(rrset(zone, "w"), every, EMPTY_OVERRIDES)
    c = next(member for member in plan.members if member.text.startswith("c."))
    assert c.reason == "maint (its agent said so)"


# -- the monitor publishes agent news, not agent noise ----------------------------------------


def test_monitor_publishes_when_the_rounded_weight_changes() -> None:
    """A real HealthMonitor asks a loopback agent beside a (100 ms) SMTP greeting: the
    same reply, or one that rounds to the same 10 %, publishes nothing; a new weight,
    drain or down does, each through the view the balancer reads."""
    from conftest import wait_until
    from smtp_listeners import FakeSmtp

    from authdns.health.monitor import HealthMonitor, MemberWatch
    from authdns.zones.balancespec import AgentSpec, CheckKind, CheckSpec

    key = (names.from_text("o.test."), QTYPE.MX, "a.o.test.")
    views: list[HealthView] = []
    state = {"reply": b"75%\n", "asked": 0}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(state["reply"])
        state["asked"] += 1
        writer.close()

    async def asked(more: int) -> None:
        wanted = state["asked"] + more
        await asyncio.to_thread(wait_until, lambda: True if state["asked"] >= wanted else None, 5.0)

    async def main(smtp: FakeSmtp) -> None:
        server = await asyncio.start_server(handler, LOOPBACK, 0)
        check = CheckSpec(CheckKind.SMTP, smtp.port, interval=0.1, timeout=0.5, rise=1, fall=2,
                          agent=AgentSpec(server.sockets[0].getsockname()[1]))
        monitor = HealthMonitor(views.append)
        try:
            await monitor.watch({key: MemberWatch(check, (LOOPBACK,), smtp.port)})
            await monitor.first_round()
            await asked(1)
            assert views[-1].get(key).agent.percent == 80
            count = len(views)
            await asked(3)
            state["reply"] = b"77%\n"  # rounds to 80 % as well
            await asked(3)
            assert len(views) == count, "the same weight is no news"
            assert monitor.view().get(key).agent.detail == "77%", "but the last reply is shown"
            state["reply"] = b"30%\n"
            await asked(2)
            assert len(views) == count + 1 and views[-1].get(key).agent.percent == 30
            state["reply"] = b"drain\n"
            await asked(2)
            assert views[-1].get(key).agent.drained and views[-1].status(key) is Status.UP
            state["reply"] = b"down\n"
            await asked(1)
            assert views[-1].status(key) is Status.UP, "fall 2: one down reply is not enough"
            await asked(2)
            assert views[-1].status(key) is Status.DOWN
        finally:
            await monitor.close()
            server.close()

    with FakeSmtp("slow", delay=0.1) as smtp:
        asyncio.run(main(smtp))
