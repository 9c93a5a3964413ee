"""Response rate limiting against floods of random names (issue 15, item 8), on a real
server with dnspython's queries over real sockets.

A flood of random names from one source must get at most ``rate × seconds + burst``
full answers, whatever the names: answers synthesized from one wildcard are one
response (the wildcard's owner), NXDOMAIN and NODATA are one response per zone (its SOA
owner), as NSD and BIND count them (serve/rrl.py, ``Answer.key``). The rest goes out
truncated (slip 2) or not at all. With two workers and the flood spread over both
(several source ports: the kernel's SO_REUSEPORT hash), the bound is the same: the
buckets are the server's, not each worker's, and a reload's new generation of workers
keeps them.

``seconds`` is measured from the first query sent to the last reply read, so the
bound holds however late the server reads its backlog; ``RACES`` allows for the
lost updates between two workers that serve/rrl.py documents (none seen in runs: the
slack is there so a loaded machine cannot fail the test, and is far below the double
that per-worker buckets give).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from conftest import start_server, status_json, stop_server, wait_until
from support import Flood, udp_flood, write_zone

RATE = 100
FLOOD_SECONDS = 2.0
GAP = 0.0002  # seconds between queries asked for: the sleep takes longer, 600-2,000 q/s in runs
SOCKETS = 16  # source ports the flood comes from
RACES = 0.03  # share of the bound lost updates between workers may add


def limit(flood: Flood, workers: int) -> float:
    burst = RATE  # one second's worth
    bound = RATE * flood.elapsed + burst
    return bound * (1 + RACES) + 2 if workers > 1 else bound + 1


def flood_and_check(zone_dir: Path, workers: int, name, rdtype: str, what: str) -> Flood:
    server = start_server(zone_dir, "--rrl-rate", str(RATE), "--rrl-slip", "2", workers=workers)
    try:
        before = {worker["pid"]: worker["queries"] for worker in status_json(server.state_dir).get("workers") or []}
        flood = udp_flood("127.0.0.2", server.port, FLOOD_SECONDS, GAP, name=name, rdtype=rdtype, sockets=SOCKETS)
        print(f"\n{what}, {workers} worker(s): sent {flood.sent}, answered {flood.full}, truncated "
              f"{flood.truncated} in {flood.elapsed:.2f} s; limit {RATE}/s + {RATE} burst = "
              f"{RATE * flood.elapsed + RATE:.0f}")
        assert flood.sent > 3 * (RATE * FLOOD_SECONDS + RATE), "the flood must exceed the limit by far"
        assert flood.full <= limit(flood, workers), flood
        assert flood.full >= RATE * FLOOD_SECONDS * 0.8, flood  # the limit, not a blackout
        assert flood.truncated > 0, flood  # slip 2: half of the limited ones, truncated
        if workers > 1:  # the flood did reach every worker: the kernel spread the ports
            after = status_json(server.state_dir)["workers"]
            shares = [worker["queries"] - before.get(worker["pid"], 0) for worker in after]
            assert len(shares) == workers and all(share > flood.sent / 10 for share in shares), shares
        return flood
    finally:
        stop_server(server.process)


def random_name(under: str):
    return lambda n: f"r{n}x{os.getpid()}.{under}"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_random_names_under_a_wildcard(zone_dir: Path, workers: int) -> None:
    """``*.users.example.test``: each random name gets a synthesized A (RFC 4592), all
    of them one response, the wildcard's."""
    flood_and_check(zone_dir, workers, random_name("users.example.test"), "A", "wildcard answers")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_random_nxdomain_names(zone_dir: Path, workers: int) -> None:
    """Random names that do not exist: one response per zone (NSD's and BIND's
    nxdomains), the zone's SOA owner."""
    flood_and_check(zone_dir, workers, random_name("example.test"), "A", "NXDOMAIN")


@pytest.mark.slow
def test_nodata_for_many_names_of_one_zone(zone_dir: Path) -> None:
    """AAAA for 3,000 names that have only an A: NODATA each, one response per zone
    (its SOA owner). Counted by name, each name would have a bucket of its own."""
    write_zone(zone_dir, "hosts.test", "records:\n  \"@\":\n    NS: ns1\n  ns1: {A: 192.0.2.1}\n"
               + "".join(f"  h{n}: {{A: 192.0.2.{n % 250 + 1}}}\n" for n in range(3000)))
    flood_and_check(zone_dir, 1, lambda n: f"h{n % 3000}.hosts.test", "AAAA", "NODATA")


@pytest.mark.slow
def test_a_reload_during_the_flood_keeps_the_buckets(zone_dir: Path) -> None:
    """A new zone mid-flood: the supervisor forks a new generation of workers, which
    count into the same shared table, so the flood gets no second burst."""
    server = start_server(zone_dir, "--rrl-rate", str(RATE), "--rrl-slip", "2", workers=2)
    try:
        first = {worker["generation"] for worker in status_json(server.state_dir)["workers"]}
        result: list[Flood] = []
        flooding = threading.Thread(target=lambda: result.append(udp_flood(
            "127.0.0.2", server.port, 5.0, GAP, name=random_name("users.example.test"), rdtype="A",
            sockets=SOCKETS)))
        flooding.start()
        wait_until(lambda: sum(worker["queries"] for worker in status_json(server.state_dir)["workers"]) > RATE
                   or None, timeout=5)  # under way, the burst spent
        write_zone(zone_dir, "extra.test", "records:\n  \"@\":\n    NS: ns1\n  ns1: {A: 192.0.2.1}\n")
        wait_until(lambda: {worker["generation"] for worker in status_json(server.state_dir)["workers"]}
                   .isdisjoint(first) or None, timeout=5)
        reloaded = flooding.is_alive()  # the new generation served while the flood still ran
        flooding.join(timeout=10)
        flood = result[0]
        print(f"\nwildcard answers across a reload, 2 workers: sent {flood.sent}, answered {flood.full} in "
              f"{flood.elapsed:.2f} s; limit {RATE * flood.elapsed + RATE:.0f}")
        assert reloaded, "the reload must land inside the flood"
        assert flood.full <= limit(flood, 2), flood
    finally:
        stop_server(server.process)
