"""Agent checks end to end: a real server health-checks two stand-in exchangers on
127.0.0.2 and 127.0.0.3 (a tcp check on one port, an agent on another, both served by
asyncio in the test, ``agent_listeners.AgentHost``) and dnspython watches the answers of
a weighted ``answer: 1`` A RRset follow what the agents say.

Checks:
* a percent scales the member's share (30 % of weight 1 beside 100 %: 3 answers in 13);
* ``drain`` keeps it out of the answers while it stays up (status says drained), ``up``
  brings it back; ``maint`` takes it out, ``ready`` lifts it;
* ``down`` takes the member down only after ``fall`` replies (no sooner than
  (fall - 1) x interval after the agent says it), and it comes back after ``rise``;
* an agent that goes away or answers garbage leaves the member up at the last percent,
  and status shows the failure; the failure is logged, rate-limited;
* status, explain and the status page data show the agent's last reply per member.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from agent_listeners import AgentHost, free_pair
from conftest import ServerProcess, run_authdns, status_json, wait_until
from support import write_zone

pytestmark = pytest.mark.slow  # a server and probes for several seconds

INTERVAL, TIMEOUT, RISE, FALL = 0.2, 0.5, 2, 3
ORIGIN = "agent.test"
HOSTS = {"a": "127.0.0.2", "b": "127.0.0.3"}
ADDRESSES = {"a": "192.0.2.21", "b": "192.0.2.22"}
DEADLINE = 10.0


@pytest.fixture
def agents() -> Iterator[dict[str, AgentHost]]:
    check_port, agent_port = free_pair(list(HOSTS.values()))
    started = {name: AgentHost(host, check_port, agent_port).start() for name, host in HOSTS.items()}
    yield started
    for agent in started.values():
        agent.stop()


def zone_text(check_port: int, agent_port: int) -> str:
    return f"""
ttl: 30
records:
  "@":
    NS: ns1
  ns1: {{A: 192.0.2.1}}
  pool:
    A:
      policy: weighted
      answer: 1
      check: {{kind: tcp, port: {check_port}, interval: {INTERVAL}, timeout: {TIMEOUT}, rise: {RISE}, fall: {FALL},
               agent: {{port: {agent_port}}}}}
      records:
        - {{address: {ADDRESSES["a"]}, probe: {HOSTS["a"]}}}
        - {{address: {ADDRESSES["b"]}, probe: {HOSTS["b"]}}}
"""


@pytest.fixture
def server(agents: dict[str, AgentHost], tmp_path: Path, server_factory) -> ServerProcess:
    zone_dir = tmp_path / "zones"
    some = agents["a"]
    write_zone(zone_dir, ORIGIN, zone_text(some.check_port, some.agent_port))
    return server_factory(zone_dir)


def answered(server: ServerProcess, count: int) -> Counter:
    """Which member each of ``count`` answers carried (``answer: 1``: one each)."""
    names = {address: name for name, address in ADDRESSES.items()}
    seen: Counter = Counter()
    for _ in range(count):
        reply = server.query(f"pool.{ORIGIN}", "A")
        for rrset in reply.answer:
            for rdata in rrset:
                seen[names[rdata.address]] += 1
    return seen


def shares_become(server: ServerProcess, expected: dict[str, int], slack: int = 2) -> Counter:
    """Poll until a window of ten cycles (10 x sum(expected) answers) is within ``slack``
    of ten times ``expected``: the smooth weighted cycle runs on from where the old
    weights left it, so a window need not start at a cycle's start."""
    window = 10 * sum(expected.values())

    def close_enough() -> Counter | None:
        seen = answered(server, window)
        ok = all(abs(seen[name] - 10 * share) <= slack for name, share in expected.items())
        return seen if ok else None
    close_enough.__name__ = f"answers in the proportion {expected}"
    return wait_until(close_enough, timeout=DEADLINE, interval=0.05)


def member_status(server: ServerProcess, name: str) -> dict:
    assert server.state_dir is not None
    (rrset,) = status_json(server.state_dir)["rrsets"]
    return next(member for member in rrset["members"] if member["member"] == ADDRESSES[name])


def status_shows(server: ServerProcess, name: str, check) -> dict:
    def matches() -> dict | None:
        member = member_status(server, name)
        return member if check(member) else None
    matches.__name__ = f"status of {name} as expected"
    return wait_until(matches, timeout=DEADLINE, interval=0.05)


def test_percent_scales_the_share(server: ServerProcess, agents: dict[str, AgentHost]) -> None:
    shares_become(server, {"a": 1, "b": 1})
    agents["a"].reply = b"30%\n"
    shares_become(server, {"a": 3, "b": 10})  # 10 % steps: 3 tenths beside 10
    member = status_shows(server, "a", lambda m: m["agent"]["percent"] == 30)
    assert member["agent"]["reply"] == "30%" and member["agent"]["ok"] and member["effective_weight"] == 0.3
    agents["a"].reply = b"up 100%\n"
    shares_become(server, {"a": 1, "b": 1})


def test_drain_and_maint(server: ServerProcess, agents: dict[str, AgentHost]) -> None:
    agents["b"].reply = b"drain # queue too long\n"
    status_shows(server, "b", lambda m: m["agent"]["drained"])
    assert answered(server, 30) == {"a": 30}
    member = member_status(server, "b")
    assert member["status"] == "up" and "drained by its agent" in member["reason"]
    agents["b"].reply = b"up\n"
    shares_become(server, {"a": 1, "b": 1})
    agents["a"].reply = b"MAINT\n"
    member = status_shows(server, "a", lambda m: m["status"] == "down")
    assert member["agent"]["maint"] and member["reason"] == "maint (its agent said so)"
    assert answered(server, 30) == {"b": 30}
    agents["a"].reply = b"ready\n"
    shares_become(server, {"a": 1, "b": 1})


def test_down_waits_for_fall_replies(server: ServerProcess, agents: dict[str, AgentHost]) -> None:
    shares_become(server, {"a": 1, "b": 1})
    assert member_status(server, "a")["status"] == "up"
    agents["a"].reply = b"down#disk full\n"
    said = time.monotonic()
    wait_until(lambda: answered(server, 10) == {"b": 10} or None, timeout=DEADLINE, interval=0.02)
    took = time.monotonic() - said
    print(f"down after {took:.2f}s (fall {FALL} x interval {INTERVAL})")
    assert took >= (FALL - 1) * INTERVAL - 0.05, "fall damps an agent's down like a failed probe"
    member = member_status(server, "a")
    assert member["status"] == "down" and "agent says down" in member["last_probe"]
    server.wait_for_log(r"health member=pool\.agent\.test\. A 192\.0\.2\.21 status=down")
    agents["a"].reply = b"up\n"
    shares_become(server, {"a": 1, "b": 1})


def test_an_agent_that_fails_leaves_the_member_up(server: ServerProcess, agents: dict[str, AgentHost]) -> None:
    agents["a"].reply = b"50%\n"
    shares_become(server, {"a": 1, "b": 2})
    agents["a"].stop_agent()
    member = status_shows(server, "a", lambda m: not m["agent"]["ok"])
    assert member["status"] == "up" and member["agent"]["percent"] == 50, "the last percent is kept"
    assert "refused" in member["agent"]["reply"]
    shares_become(server, {"a": 1, "b": 2})
    server.wait_for_log(r"health error where=agent 127\.0\.0\.2 \d+ .*left to its check")
    agents["a"].start_agent()
    agents["a"].reply = b"\x00\xffgarbage\n"
    status_shows(server, "a", lambda m: "garbage" in m["agent"]["reply"])
    assert member_status(server, "a")["status"] == "up"
    shares_become(server, {"a": 1, "b": 2})
    assert len([line for line in server.log if "where=agent 127.0.0.2" in line]) == 1, "once a minute per agent"


def test_status_and_explain_show_the_reply(server: ServerProcess, agents: dict[str, AgentHost]) -> None:
    agents["a"].reply = b"70%, up\n"
    status_shows(server, "a", lambda m: m["agent"]["percent"] == 70)
    assert server.state_dir is not None
    text = run_authdns("status", "--state-dir", server.state_dir).stdout
    assert 'agent "70%, up" 70%' in text and f"agent :{agents['a'].agent_port}" in text
    explained = run_authdns("explain", f"pool.{ORIGIN}", "A", "--state-dir", server.state_dir).stdout
    assert "weight 1->0.7" in explained
