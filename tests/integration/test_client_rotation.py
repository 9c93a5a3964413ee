"""One rotation per resolver (balancing/rotors.py), seen from outside: four clients in
different /24s of loopback ask a real server in lockstep, with dnspython.

Resolvers that ask in step alias one shared sequence: with weighted 3:1 and
``answer: 1`` (a cycle of four answers) and four resolvers taking turns, each one gets
the same position of every cycle, so all of its mail goes to one exchanger. With a
rotation per client prefix, each resolver is walked through the whole cycle: exactly
3:1 over its own answers. ``--client-rotors 0`` brings back the one shared sequence
(and shows that this test tells the two apart). Two addresses of one /24 share a
rotation; UDP and TCP from one client move the same one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dns.message
import dns.query
import pytest

from support import write_zone

ZONE = """
ttl: 30
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  one:
    MX:
      policy: weighted
      answer: 1
      records:
        - {preference: 10, exchange: mx1, weight: 3}
        - {preference: 10, exchange: mx2, weight: 1}
  two:
    MX:
      policy: weighted
      answer: 2
      records:
        - {preference: 10, exchange: mx1, weight: 3}
        - {preference: 10, exchange: mx2, weight: 1}
        - {preference: 10, exchange: mx3, weight: 1}
  mx1: {A: 192.0.2.11}
  mx2: {A: 192.0.2.12}
  mx3: {A: 192.0.2.13}
"""

RESOLVERS = ["127.0.1.1", "127.0.2.1", "127.0.3.1", "127.0.4.1"]  # four /24s of loopback


@pytest.fixture
def zone_dir(tmp_path: Path) -> Path:
    zones = tmp_path / "zones"
    write_zone(zones, "rot.test", ZONE)
    return zones


def exchanges(server, name: str, source: str, tcp: bool = False) -> list[str]:
    query = dns.message.make_query(f"{name}.rot.test", "MX")
    if tcp:
        reply = dns.query.tcp(query, server.host, port=server.port, timeout=2.0, source=source)
    else:
        reply = dns.query.udp(query, server.host, port=server.port, timeout=2.0, source=source)
    return [rdata.exchange.labels[0].decode() for rrset in reply.answer for rdata in rrset]


def lockstep(server, name: str, rounds: int, sources: list[str] = RESOLVERS) -> dict[str, list[list[str]]]:
    """Each source asks once per round, in the same order every round."""
    answers: dict[str, list[list[str]]] = {source: [] for source in sources}
    for _ in range(rounds):
        for source in sources:
            answers[source].append(exchanges(server, name, source))
    return answers


def test_each_resolver_walks_the_whole_cycle(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir)
    answers = lockstep(server, "one", 40)
    for source, given in answers.items():
        assert Counter(answer[0] for answer in given) == {"mx1": 30, "mx2": 10}, source


def test_subsets_are_exact_per_resolver(server_factory, zone_dir: Path) -> None:
    """3:1:1 with answer: 2 (a cycle of five answers, one of them mx1 alone; the first
    place turns too: ten): each of five resolvers in lockstep (which would alias a shared
    cycle of ten) gets answers whose even split is 60/20/20 of its own mail."""
    server = server_factory(zone_dir)
    answers = lockstep(server, "two", 20, RESOLVERS + ["127.0.5.1"])
    for source, given in answers.items():
        delivered: Counter[str] = Counter()
        for answer in given:
            for exchange in answer:
                delivered[exchange] += 10 / len(answer)  # 10 messages per answer, split evenly
        assert {exchange: round(share) for exchange, share in delivered.items()} == \
            {"mx1": 120, "mx2": 40, "mx3": 40}, (source, given)


def test_one_shared_rotation_aliases_and_the_flag_brings_it_back(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir, "--client-rotors", "0")
    answers = lockstep(server, "one", 40)
    firsts = {source: Counter(answer[0] for answer in given) for source, given in answers.items()}
    assert all(len(counted) == 1 for counted in firsts.values()), firsts  # each resolver: one exchanger only
    assert sum(firsts.values(), Counter()) == {"mx1": 120, "mx2": 40}  # the shared sequence is still exact


def test_a_prefix_shares_one_rotation_across_addresses_and_transports(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir)
    given = []
    for turn in range(40):  # two hosts of 127.0.9.0/24, alternating, every third query over TCP
        source = "127.0.9.1" if turn % 2 else "127.0.9.2"
        given.append(exchanges(server, "one", source, tcp=turn % 3 == 0)[0])
    # One rotation for the /24: its answers are the shared 3:1 cycle, in order.
    assert [given[start:start + 4].count("mx1") for start in range(0, 40, 4)] == [3] * 10, given
