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
* status, explain and the status page data show the agent's last reply per member;
* the README's three-line Postfix agent, run under socat exactly as the README shows
  (port and path replaced) with a stand-in ``postqueue``: the shares follow the queue.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
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


def test_status_explain_and_page_show_the_reply(agents: dict[str, AgentHost], tmp_path: Path,
                                                server_factory) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(agents["a"].check_port, agents["a"].agent_port))
    server = server_factory(zone_dir, "--metrics", "127.0.0.1:0")
    agents["a"].reply = b"70%, up\n"
    status_shows(server, "a", lambda m: m["agent"]["percent"] == 70)
    assert server.state_dir is not None
    text = run_authdns("status", "--state-dir", server.state_dir).stdout
    assert 'agent "70%, up" 70%' in text and f"agent :{agents['a'].agent_port}" in text
    explained = run_authdns("explain", f"pool.{ORIGIN}", "A", "--state-dir", server.state_dir).stdout
    assert "weight 1->0.7" in explained
    port = re.search(r"port=(\d+)", server.wait_for_log(r"metrics and status page http://")).group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as response:
        page = json.load(response)
    (rrset,) = page["rrsets"]
    shown = {member["member"]: member["agent"] for member in rrset["members"]}
    assert shown[ADDRESSES["a"]]["reply"] == "70%, up" and shown[ADDRESSES["b"]]["percent"] == 100


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_agent() -> tuple[str, str]:
    """The README's Postfix agent script and its socat command line, as printed there."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Agent checks", 1)[1].split("\n### ", 1)[0]
    script = next(block for block in re.findall(r"```sh\n(.*?)```", section, re.S) if "postqueue" in block)
    command = next(line.removeprefix("$ ") for line in section.splitlines() if line.startswith("$ socat "))
    return script, command


@pytest.fixture
def readme_agents(tmp_path: Path) -> Iterator[tuple[dict[str, Path], int, int]]:
    """The README's agent under socat on each stand-in exchanger, as the README runs it
    (its port and path replaced, bound to the exchanger's loopback address), with a
    ``postqueue`` on its PATH that prints one JSON line per message in that host's
    ``queue`` file; a plain listener on the check's port."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (.ci/run installs it)")
    script, command = readme_agent()
    agent = tmp_path / "authdns-agent"
    agent.write_text(script, encoding="utf-8")
    agent.chmod(0o755)
    check_port, agent_port = free_pair(list(HOSTS.values()))
    listeners, processes, queues = [], [], {}
    try:
        for name, host in HOSTS.items():
            bin_dir = tmp_path / f"bin-{name}"
            bin_dir.mkdir()
            queues[name] = tmp_path / f"queue-{name}"
            queues[name].write_text("")
            fake = bin_dir / "postqueue"
            fake.write_text(f"#!/bin/sh\ncat {queues[name]}\n", encoding="utf-8")
            fake.chmod(0o755)
            listener = AgentHost(host, check_port, agent_port).start()
            listener.stop_agent()  # socat serves the agent port
            listeners.append(listener)
            line = (command.replace("TCP-LISTEN:4711", f"TCP-LISTEN:{agent_port},bind={host}")
                    .replace("/usr/local/bin/authdns-agent", str(agent)))
            assert line != command, "the README's socat line names port 4711 and the agent's path"
            env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
            processes.append(subprocess.Popen(shlex.split(line), env=env, stdin=subprocess.DEVNULL))
        for host in HOSTS.values():
            wait_until(lambda: _connects(host, agent_port) or None, timeout=DEADLINE)
        yield queues, check_port, agent_port
    finally:
        for process in processes:  # by PID: only what this fixture started
            process.terminate()
            process.wait(5)
        for listener in listeners:
            listener.stop()


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as connection:
            connection.recv(100)
        return True
    except OSError:
        return False


def queue(path: Path, messages: int) -> None:
    line = '{"queue_name": "active", "queue_id": "4Q1x2", "arrival_time": 1700000000}\n'
    path.write_text(line * messages, encoding="utf-8")


def test_the_readme_postfix_agent_steers_the_answers(readme_agents, tmp_path: Path, server_factory) -> None:
    queues, check_port, agent_port = readme_agents
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(check_port, agent_port))
    server = server_factory(zone_dir)
    shares_become(server, {"a": 1, "b": 1})
    assert status_shows(server, "a", lambda m: m["agent"]["reply"] == "100% # 0 queued")["agent"]["percent"] == 100
    queue(queues["a"], 500)  # 100 - 500 x 90 / 1000 = 55 %: 6 tenths beside 10
    member = status_shows(server, "a", lambda m: m["agent"]["reply"] == "55% # 500 queued")
    assert member["agent"]["percent"] == 60
    shares_become(server, {"a": 6, "b": 10})
    queue(queues["a"], 3000)  # a backed-up exchanger keeps 10 %
    queue(queues["b"], 100)  # 91 %: 9 tenths
    shares_become(server, {"a": 1, "b": 9})
    queue(queues["a"], 0)
    queue(queues["b"], 0)
    shares_become(server, {"a": 1, "b": 1})
