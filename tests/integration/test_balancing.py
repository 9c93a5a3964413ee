"""Load-aware ordering seen from outside: N >= 1000 queries with dnspython against a real
server, counting who comes first (no health checks here; see test_health_checks.py).

Checks:
* round-robin: each of k equal-preference MX members is first exactly N/k times, and
  each answer is the next rotation (cyclic order kept);
* MX preference groups never interleave: preferences never decrease along an answer, and
  the backup stays behind the pool;
* weighted 3:1 is exactly 75 %/25 % of first places over whole cycles; the members after
  the first follow in one deterministic order;
* ``answer: 1`` returns one member, in the same exact shares (MX and A);
* ``answer: N`` on MX cuts each preference group, backups stay;
* ``promote``: every member answered, the chosen one with preference - 1, in rotation;
* ``fixed`` keeps zone order; ``random`` answers every member in varying orders;
* weight 0 (standby) is never answered while weighted members are up;
* the addresses of MX targets in additional follow the answer (a cut member's go too)
  and a balanced multihomed target's addresses are ordered by its own policy;
* UDP and TCP share one rotation (one server, one rotor).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dns.rdatatype
import pytest

from conftest import ServerProcess, run_authdns
from support import write_zone

ZONE = """
ttl: 60
records:
  "@":
    NS: ns1
  ns1: {A: 192.0.2.1}
  rr:
    MX:
      records: ["10 mx1", "10 mx2", "10 mx3", "50 backup"]
  weighted:
    MX:
      policy: weighted
      records:
        - {preference: 10, exchange: mx1, weight: 3}
        - {preference: 10, exchange: mx2, weight: 1}
  one:
    MX:
      policy: weighted
      answer: 1
      records:
        - {preference: 10, exchange: mx1, weight: 3}
        - {preference: 10, exchange: mx2, weight: 1}
  two:
    MX:
      answer: 2
      records: ["10 mx1", "10 mx2", "10 mx3", "50 backup"]
  promoted:
    MX:
      promote: true
      records: ["10 mx1", "10 mx2", "10 mx3", "50 backup"]
  fixed:
    MX:
      policy: fixed
      records: ["10 mx3", "10 mx1", "10 mx2"]
  shuffled:
    MX:
      policy: random
      records: ["10 mx1", "10 mx2", "10 mx3"]
  standby:
    MX:
      policy: weighted
      records:
        - {preference: 10, exchange: mx1, weight: 1}
        - {preference: 10, exchange: mx2, weight: 1}
        - {preference: 10, exchange: spare, weight: 0}
  web:
    A:
      policy: weighted
      answer: 1
      records:
        - {address: 192.0.2.80, weight: 3}
        - {address: 192.0.2.81, weight: 1}
  multi:
    MX: ["10 mx1", "10 host"]
  mx1: {A: 192.0.2.11}
  mx2: {A: 192.0.2.12}
  mx3: {A: 192.0.2.13}
  spare: {A: 192.0.2.19}
  backup: {A: 192.0.2.50}
  host:
    A: [192.0.2.21, 192.0.2.22, 192.0.2.23]
"""

ORIGIN = "bal.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    from conftest import start_server, stop_server

    zone_dir = tmp_path_factory.mktemp("balancing") / "zones"
    write_zone(zone_dir, ORIGIN, ZONE)
    process = start_server(zone_dir)
    yield process
    stop_server(process.process)


def exchanges(server: ServerProcess, name: str, tcp: bool = False) -> list[tuple[int, str]]:
    """(preference, exchange label) in answer order."""
    reply = server.query(f"{name}.{ORIGIN}", "MX", tcp=tcp)
    return [(rdata.preference, rdata.exchange.labels[0].decode()) for rrset in reply.answer for rdata in rrset]


def addresses(server: ServerProcess, name: str) -> list[str]:
    reply = server.query(f"{name}.{ORIGIN}", "A")
    return [rdata.address for rrset in reply.answer for rdata in rrset]


@pytest.mark.slow
def test_round_robin_exact_shares_and_rotation(server: ServerProcess) -> None:
    answers = [exchanges(server, "rr", tcp=index % 5 == 0) for index in range(1200)]
    firsts = Counter(answer[0][1] for answer in answers)
    assert firsts == {"mx1": 400, "mx2": 400, "mx3": 400}
    for previous, current in zip(answers, answers[1:]):
        pool = [host for preference, host in previous if preference == 10]
        assert [host for preference, host in current if preference == 10] == pool[1:] + pool[:1]
    for answer in answers:
        preferences = [preference for preference, _ in answer]
        assert preferences == sorted(preferences) and answer[-1] == (50, "backup")


def test_weighted_three_to_one_exact(server: ServerProcess) -> None:
    answers = [exchanges(server, "weighted") for _ in range(1000)]
    firsts = Counter(answer[0][1] for answer in answers)
    assert firsts == {"mx1": 750, "mx2": 250}
    # Whole cycles of 4: 3 + 1 in every one of them, not just overall.
    for start in range(0, 1000, 4):
        assert Counter(answer[0][1] for answer in answers[start:start + 4]) == {"mx1": 3, "mx2": 1}
    assert {tuple(host for _, host in answer) for answer in answers} == {("mx1", "mx2"), ("mx2", "mx1")}


@pytest.mark.slow
def test_answer_one_gives_shares_of_presence(server: ServerProcess) -> None:
    answers = [exchanges(server, "one") for _ in range(1000)]
    assert all(len(answer) == 1 for answer in answers)
    assert Counter(answer[0][1] for answer in answers) == {"mx1": 750, "mx2": 250}
    web = [addresses(server, "web") for _ in range(1000)]
    assert all(len(answer) == 1 for answer in web)
    assert Counter(answer[0] for answer in web) == {"192.0.2.80": 750, "192.0.2.81": 250}


def test_answer_n_cuts_each_mx_group(server: ServerProcess) -> None:
    answers = [exchanges(server, "two") for _ in range(300)]
    for answer in answers:
        assert len(answer) == 3 and answer[-1] == (50, "backup")
        assert all(preference == 10 for preference, _ in answer[:2])
    assert Counter(host for answer in answers for _, host in answer[:2]) == {"mx1": 200, "mx2": 200, "mx3": 200}


def test_promote_lowers_the_chosen_preference(server: ServerProcess) -> None:
    answers = [exchanges(server, "promoted") for _ in range(300)]
    promoted = Counter()
    for answer in answers:
        assert sorted(host for _, host in answer) == ["backup", "mx1", "mx2", "mx3"]
        nines = [host for preference, host in answer if preference == 9]
        assert len(nines) == 1 and answer[0] == (9, nines[0])
        assert (49, "backup") in answer
        promoted[nines[0]] += 1
    assert promoted == {"mx1": 100, "mx2": 100, "mx3": 100}


def test_fixed_keeps_zone_order(server: ServerProcess) -> None:
    for _ in range(20):
        assert [host for _, host in exchanges(server, "fixed")] == ["mx3", "mx1", "mx2"]


def test_random_answers_everyone_in_varying_orders(server: ServerProcess) -> None:
    orders = Counter(tuple(host for _, host in exchanges(server, "shuffled")) for _ in range(300))
    assert all(sorted(order) == ["mx1", "mx2", "mx3"] for order in orders)
    # 6 orders possible; 300 uniform shuffles miss one with probability < 1e-20.
    assert len(orders) == 6
    firsts = Counter(order[0] for order, count in orders.items() for _ in range(count))
    assert all(50 <= count <= 150 for count in firsts.values()), firsts


def test_standby_never_answered_while_weighted_members_up(server: ServerProcess) -> None:
    answers = [exchanges(server, "standby") for _ in range(100)]
    assert all(sorted(host for _, host in answer) == ["mx1", "mx2"] for answer in answers)


def test_additional_follows_the_answer(server: ServerProcess) -> None:
    for _ in range(30):
        reply = server.query(f"two.{ORIGIN}", "MX")
        answered = [rdata.exchange.labels[0].decode() for rrset in reply.answer for rdata in rrset]
        extra = [rrset.name.labels[0].decode() for rrset in reply.additional
                 if rrset.rdtype == dns.rdatatype.A]
        assert extra == answered, "each answered exchange's address, in answer order; no cut member's"


def test_multihomed_target_addresses_rotate_in_additional(server: ServerProcess) -> None:
    seen = []
    for _ in range(30):
        reply = server.query(f"multi.{ORIGIN}", "MX")
        host = [rrset for rrset in reply.additional if rrset.name.labels[0] == b"host"]
        assert len(host) == 1 and len(host[0]) == 3
        seen.append(tuple(rdata.address for rdata in host[0]))
    firsts = Counter(order[0] for order in seen)
    assert set(firsts) == {"192.0.2.21", "192.0.2.22", "192.0.2.23"}


def test_checks_warn_about_long_ttl(tmp_path: Path) -> None:
    path = write_zone(tmp_path, "ttl.test", 'records:\n  "@": {NS: ns}\n  ns: {A: [192.0.2.1, 192.0.2.2]}\n')
    result = run_authdns("check", path, timeout=30)
    assert result.returncode == 0
    assert f"{path}:3:8: warning: balanced A RRset has TTL 3600" in result.stdout
