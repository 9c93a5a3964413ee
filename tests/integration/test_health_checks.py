"""Health-checked balancing against real SMTP listeners on loopback: a real server probes
them (``probe: 127.0.0.1:PORT`` stands in for each exchanger's served address) and
dnspython watches the answers change.

Checks (timings are measured and printed with ``-s``; bounds come from the issue):
* the first probe round completes before the first answer: a member whose listener
  never greets is absent from the very first answer;
* a member whose listener stops leaves the answers within interval x fall + timeout, and
  its address leaves the additional section; it returns within interval x rise after
  the listener restarts;
* every member of the pool down → the backup preference comes first; everything down →
  every member answered (fail open);
* a 421 greeting (degraded) keeps the member, at a quarter of its share under weighted;
* a standby (weight 0) is answered only while every weighted member is down;
* ``weight: auto``: a listener that greets slowly gets measurably fewer first places;
* a multihomed A RRset drops the address whose listener is down;
* health survives a reload (SIGHUP): a down member stays down, no reset to up.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ServerProcess, status_json, wait_until
from smtp_listeners import FakeSmtp
from support import exchanges, write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

INTERVAL, TIMEOUT, RISE, FALL = 0.2, 0.5, 2, 2
MARGIN = 1.5  # scheduling slack on a loaded 2-core CI machine
LEAVE_BOUND = INTERVAL * FALL + TIMEOUT + MARGIN
RETURN_BOUND = INTERVAL * RISE + TIMEOUT + MARGIN
ORIGIN = "hc.test"


@pytest.fixture
def listeners() -> Iterator[dict[str, FakeSmtp]]:
    started = {
        "mx1": FakeSmtp("ok"), "mx2": FakeSmtp("ok"), "mx3": FakeSmtp("ok"), "backup": FakeSmtp("ok"),
        "silent": FakeSmtp("silent"), "busy": FakeSmtp("busy"), "slow": FakeSmtp("slow", delay=0.15),
        "spare": FakeSmtp("ok"), "a1": FakeSmtp("ok"), "a2": FakeSmtp("ok"),
        "late": FakeSmtp("slow", delay=0.3),  # greets within the timeout, but not at once
    }
    for listener in started.values():
        listener.start()
    yield started
    for listener in started.values():
        listener.stop()


def zone_text(ports: dict[str, int]) -> str:
    def member(name: str, preference: int = 10, weight: str = "1") -> str:
        return (f"        - {{preference: {preference}, exchange: {name}, weight: {weight}, "
                f"probe: '127.0.0.1:{ports[name]}'}}\n")

    return f"""
ttl: 30
checks:
  smtp:
    kind: smtp
    interval: {INTERVAL}
    timeout: {TIMEOUT}
    rise: {RISE}
    fall: {FALL}
records:
  "@":
    NS: ns1
  ns1: {{A: 192.0.2.1}}
  pool:
    MX:
      check: smtp
      records:
{member("mx1")}{member("mx2")}{member("mx3")}{member("backup", 50)}
  withsilent:
    MX:
      check: smtp
      records:
{member("late")}{member("silent")}
  degraded:
    MX:
      check: smtp
      policy: weighted
      records:
{member("mx1")}{member("busy")}
  standby:
    MX:
      check: smtp
      policy: weighted
      records:
{member("mx2")}{member("spare", weight="0")}
  auto:
    MX:
      check: smtp
      policy: weighted
      records:
{member("mx3", weight="auto")}{member("slow", weight="auto")}
  multi:
    A:
      check: {{kind: smtp, interval: {INTERVAL}, timeout: {TIMEOUT}, rise: {RISE}, fall: {FALL}}}
      records:
        - {{address: 192.0.2.91, probe: '127.0.0.1:{ports["a1"]}'}}
        - {{address: 192.0.2.92, probe: '127.0.0.1:{ports["a2"]}'}}
""" + "".join(f"  {name}: {{A: 192.0.2.{10 + index}}}\n" for index, name in enumerate(ports))


@pytest.fixture
def server(listeners: dict[str, FakeSmtp], tmp_path: Path, server_factory) -> ServerProcess:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text({name: listener.port for name, listener in listeners.items()}))
    return server_factory(zone_dir)


def hosts(server: ServerProcess, name: str) -> list[str]:
    return exchanges(server, f"{name}.{ORIGIN}")


def firsts(server: ServerProcess, name: str, count: int) -> Counter:
    return Counter(hosts(server, name)[0] for _ in range(count))


def timed(check, timeout: float) -> float:
    start = time.monotonic()
    wait_until(check, timeout=timeout, interval=0.02)
    return time.monotonic() - start


def test_silent_member_absent_from_the_first_answer(server: ServerProcess) -> None:
    # The server said ready only after the first round. Without it, "late" (greeting
    # after 0.3 s) would still be unknown, both members would count as down, and fail
    # open would answer "silent" too.
    for _ in range(20):
        assert hosts(server, "withsilent") == ["late"]


def test_member_leaves_and_returns(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    assert sorted(hosts(server, "pool")) == ["backup", "mx1", "mx2", "mx3"]
    listeners["mx2"].stop()
    left = timed(lambda: True if "mx2" not in hosts(server, "pool") else None, LEAVE_BOUND)
    for _ in range(30):
        reply = server.query(f"pool.{ORIGIN}", "MX")
        assert "mx2" not in [rdata.exchange.labels[0].decode() for rrset in reply.answer for rdata in rrset]
        assert all(rrset.name.labels[0] != b"mx2" for rrset in reply.additional), "its address leaves too"
    listeners["mx2"].restart()
    back = timed(lambda: True if "mx2" in hosts(server, "pool") else None, RETURN_BOUND)
    print(f"\nmx2 left the answers {left:.2f} s after its listener stopped (bound {LEAVE_BOUND:.1f}); "
          f"returned {back:.2f} s after restart (bound {RETURN_BOUND:.1f})")


def test_pool_down_backup_first_then_fail_open(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    for name in ("mx1", "mx2", "mx3"):
        listeners[name].stop()
    wait_until(lambda: True if hosts(server, "pool") == ["backup"] else None, timeout=LEAVE_BOUND)
    listeners["backup"].stop()
    wait_until(lambda: True if len(hosts(server, "pool")) == 4 else None, timeout=LEAVE_BOUND)
    answer = hosts(server, "pool")
    assert sorted(answer[:3]) == ["mx1", "mx2", "mx3"] and answer[3] == "backup", "fail open keeps preference order"


def test_degraded_member_keeps_a_quarter_share(server: ServerProcess) -> None:
    counts = firsts(server, "degraded", 1000)
    # Effective weights 4 (up) and 1 (421): exactly 800/200 over whole cycles of 5.
    assert counts == {"mx1": 800, "busy": 200}


def test_standby_only_when_weighted_members_down(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    assert all(hosts(server, "standby") == ["mx2"] for _ in range(20))
    listeners["mx2"].stop()
    wait_until(lambda: True if hosts(server, "standby") == ["spare"] else None, timeout=LEAVE_BOUND)
    listeners["mx2"].restart()
    wait_until(lambda: True if hosts(server, "standby") == ["mx2"] else None, timeout=RETURN_BOUND)


def test_auto_weight_gives_slow_greeter_fewer_first_places(server: ServerProcess) -> None:
    counts = firsts(server, "auto", 550)
    print(f"\nweight auto: fast {counts['mx3']}, slow (150 ms greeting) {counts['slow']} first places of 550")
    assert counts["slow"] > 0, "bounded: a slow member is never starved"
    assert counts["mx3"] >= 4 * counts["slow"]


def test_multihomed_address_leaves(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    def addresses() -> list[str]:
        return sorted(rdata.address for rrset in server.query(f"multi.{ORIGIN}", "A").answer for rdata in rrset)

    assert addresses() == ["192.0.2.91", "192.0.2.92"]
    listeners["a1"].stop()
    wait_until(lambda: True if addresses() == ["192.0.2.92"] else None, timeout=LEAVE_BOUND)


def status_members(server: ServerProcess, name: str) -> dict[str, dict]:
    rrsets = status_json(server.state_dir)["rrsets"]
    (rrset,) = [r for r in rrsets if r["owner"] == f"{name}.{ORIGIN}." and r["type"] == "MX"]
    return {member["member"].split(".")[0]: member for member in rrset["members"]}


def test_health_survives_reload(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    listeners["mx1"].stop()
    wait_until(lambda: True if "mx1" not in hosts(server, "pool") else None, timeout=LEAVE_BOUND)
    before = status_members(server, "pool")
    zone_file = server.zone_dir / f"{ORIGIN}.yaml"
    zone_file.write_text(zone_file.read_text().replace("ttl: 30", "ttl: 31", 1))
    wait_until(lambda: True if server.query(f"ns1.{ORIGIN}", "A").answer[0].ttl == 31 else None, timeout=5)
    after = status_members(server, "pool")
    for name in ("mx1", "mx2", "mx3", "backup"):
        assert (after[name]["status"], after[name]["since"]) == (before[name]["status"], before[name]["since"]), \
            "health kept, not probed afresh"
    assert after["mx1"]["status"] == "down"
    for _ in range(20):
        assert "mx1" not in hosts(server, "pool")


def test_timeout_failover_within_bound(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    """A member that accepts but never greets (hung, not refused) leaves within
    interval x fall + timeout: probes keep their cadence while one waits out its timeout."""
    listeners["mx3"].mode = "silent"
    left = timed(lambda: True if "mx3" not in hosts(server, "pool") else None, LEAVE_BOUND)
    print(f"\nhung mx3 left the answers {left:.2f} s after it stopped greeting "
          f"(interval x fall + timeout = {INTERVAL * FALL + TIMEOUT:.1f})")


def test_member_removed_by_reload_is_not_answered_again(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    """While a reload probes its new members, the old zone keeps its own members' health:
    a dead member the reload removes must not come back meanwhile (review finding)."""
    listeners["mx2"].stop()
    wait_until(lambda: True if "mx2" not in hosts(server, "pool") else None, timeout=LEAVE_BOUND)
    zone_file = server.zone_dir / f"{ORIGIN}.yaml"
    text = zone_file.read_text()
    mx2_line = next(line for line in text.splitlines() if "exchange: mx2," in line and "pool" not in line)
    # mx2 leaves the pool; a new member that greets late makes the first round take a while.
    new_line = mx2_line.replace("exchange: mx2", "exchange: late").replace(
        str(listeners["mx2"].port), str(listeners["late"].port))
    zone_file.write_text(text.replace(mx2_line + "\n", new_line + "\n", 1))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        members = hosts(server, "pool")
        assert "mx2" not in members, "the removed dead member was answered during the reload"
        if "late" in members:
            break
    assert "late" in hosts(server, "pool")
