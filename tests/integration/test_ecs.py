"""EDNS Client Subnet (RFC 7871, answering/ecs.py) seen from outside: a real server,
dnspython's ``ECSOption`` (or raw option bytes for the malformed ones) as the client.

* The reply echoes FAMILY, SOURCE PREFIX-LENGTH and ADDRESS (§7.2.1); SCOPE
  PREFIX-LENGTH is the key's length (min(source, /24 or /56)) for an answer ordered by
  the client's own rotors, 0 for answers the same for everyone.
* A malformed option is FORMERR, answered without one (§6, §7.2.1).
* SOURCE PREFIX-LENGTH 0 (the resolver opts out): the peer's rotation, scope 0.
* Four subnets behind one resolver address, asking in lockstep, each walk the whole
  weighted 3:1 cycle: with one rotation for the resolver they would alias (each subnet
  one exchanger), as ``--ecs off`` shows; off also sends no option back.
* ``explain --client ADDR/LEN`` predicts the subnet's next answer.
* With unbound as the resolver (slow): unbound's ``send-client-subnet`` forwards each
  client's /24, and each client gets its 3:1 share through the resolver's cache.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import run_authdns, wait_until
from support import free_port, write_zone

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
  fixed:
    MX:
      policy: fixed
      records:
        - {preference: 10, exchange: mx1}
        - {preference: 10, exchange: mx2}
  mx1: {A: 192.0.2.11}
  mx2: {A: 192.0.2.12}
"""
ORIGIN = "ecs.test"
SUBNETS = ["198.51.100.0", "198.51.101.0", "198.51.102.0", "198.51.103.0"]  # four /24s behind one resolver


@pytest.fixture
def zone_dir(tmp_path: Path) -> Path:
    zones = tmp_path / "zones"
    write_zone(zones, ORIGIN, ZONE)
    return zones


def ask(server, name: str, *options: dns.edns.Option, source: str = "127.0.0.1", qtype: str = "MX",
        tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(f"{name}.{ORIGIN}" if name else ORIGIN, qtype, use_edns=0, options=list(options))
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=2.0, source=source)
    return dns.query.udp(query, server.host, port=server.port, timeout=2.0, source=source)


def ecs_of(reply: dns.message.Message) -> list[tuple[str, int, int]]:
    return [(option.address, option.srclen, option.scopelen) for option in reply.options
            if isinstance(option, dns.edns.ECSOption)]


def first_exchange(reply: dns.message.Message) -> str:
    return reply.answer[0][0].exchange.labels[0].decode()


def raw_ecs(family: int, source: int, scope: int, address: bytes) -> dns.edns.GenericOption:
    return dns.edns.GenericOption(dns.edns.OptionType.ECS, struct.pack("!HBB", family, source, scope) + address)


@pytest.mark.parametrize(("address", "source", "scope"), [
    ("192.0.2.0", 24, 24), ("192.0.2.7", 32, 24), ("10.0.0.0", 8, 8), ("192.0.2.128", 25, 24),
    ("2001:db8:1:200::", 64, 56), ("2001:db8::", 48, 48),
])
def test_a_balanced_answer_echoes_the_subnet_with_the_keys_scope(server_factory, zone_dir: Path, address: str,
                                                                  source: int, scope: int) -> None:
    server = server_factory(zone_dir)
    for tcp in (False, True):
        reply = ask(server, "one", dns.edns.ECSOption(address, source), tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert ecs_of(reply) == [(address, source, scope)], tcp


def test_answers_the_same_for_everyone_have_scope_zero(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir)
    subnet = dns.edns.ECSOption("192.0.2.0", 24)
    for name, qtype, rcode in (("ns1", "A", dns.rcode.NOERROR), ("fixed", "MX", dns.rcode.NOERROR),
                               ("one", "AAAA", dns.rcode.NOERROR), ("nowhere", "MX", dns.rcode.NXDOMAIN)):
        reply = ask(server, name, subnet, qtype=qtype)
        assert reply.rcode() == rcode and ecs_of(reply) == [("192.0.2.0", 24, 0)], name
    refused = dns.query.udp(dns.message.make_query("elsewhere.example", "A", use_edns=0, options=[subnet]),
                            server.host, port=server.port, timeout=2.0)
    assert refused.rcode() == dns.rcode.REFUSED and ecs_of(refused) == [("192.0.2.0", 24, 0)]


def test_without_per_client_rotors_the_scope_is_zero(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir, "--client-rotors", "0")
    assert ecs_of(ask(server, "one", dns.edns.ECSOption("192.0.2.0", 24))) == [("192.0.2.0", 24, 0)]


@pytest.mark.parametrize(("what", "option"), [
    ("unknown family", raw_ecs(3, 0, 0, b"")),
    ("IPv4 source beyond 32", raw_ecs(1, 33, 0, b"\xc0\x00\x02\x00\x00")),
    ("IPv6 source beyond 128", raw_ecs(2, 129, 0, b"\x20" + b"\x00" * 16)),
    ("address longer than the prefix needs", raw_ecs(1, 24, 0, b"\xc0\x00\x02\x00")),
    ("address shorter than the prefix needs", raw_ecs(1, 24, 0, b"\xc0\x00")),
    ("bits set beyond the prefix", raw_ecs(1, 20, 0, b"\xc0\x00\x1f")),
    ("scope set in a query", raw_ecs(1, 24, 24, b"\xc0\x00\x02")),
    ("shorter than its fixed part", dns.edns.GenericOption(dns.edns.OptionType.ECS, b"\x00\x01\x18")),
    ("two options", raw_ecs(1, 24, 0, b"\xc0\x00\x02")),
])
def test_a_malformed_option_is_formerr(server_factory, zone_dir: Path, what: str, option) -> None:
    server = server_factory(zone_dir)
    options = [option, option] if what == "two options" else [option]
    reply = ask(server, "one", *options)
    assert reply.rcode() == dns.rcode.FORMERR, what
    assert reply.edns == 0 and not [o for o in reply.options if o.otype == dns.edns.OptionType.ECS], what
    assert reply.question and ask(server, "one").rcode() == dns.rcode.NOERROR


def test_source_zero_opts_out_to_the_peers_rotation(server_factory, zone_dir: Path) -> None:
    """Queries that opt out (0.0.0.0/0) and plain ones from one address move one rotation:
    the shared 3:1 cycle in order (mx1 mx1 mx2 mx1)."""
    server = server_factory(zone_dir)
    given = []
    for turn in range(16):
        options = [dns.edns.ECSOption("0.0.0.0", 0)] if turn % 2 else []
        reply = ask(server, "one", *options, source="127.0.7.1")
        if options:
            assert ecs_of(reply) == [("0.0.0.0", 0, 0)]
        given.append(first_exchange(reply))
    assert [given[start:start + 4].count("mx1") for start in range(0, 16, 4)] == [3] * 4, given


def lockstep(server, rounds: int) -> dict[str, Counter]:
    """Each subnet asks once a round through one resolver address, in the same order."""
    firsts: dict[str, Counter] = {subnet: Counter() for subnet in SUBNETS}
    for _ in range(rounds):
        for subnet in SUBNETS:
            firsts[subnet][first_exchange(ask(server, "one", dns.edns.ECSOption(subnet, 24)))] += 1
    return firsts


def test_subnets_behind_one_resolver_each_walk_their_own_cycle(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir)
    for subnet, counted in lockstep(server, 40).items():
        assert counted == {"mx1": 30, "mx2": 10}, subnet


def test_ecs_off_ignores_the_option_and_sends_none(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir, "--ecs", "off")
    reply = ask(server, "one", dns.edns.ECSOption("192.0.2.0", 24))
    assert reply.rcode() == dns.rcode.NOERROR and ecs_of(reply) == [] and reply.edns == 0
    assert ask(server, "one", raw_ecs(3, 0, 0, b"")).rcode() == dns.rcode.NOERROR  # not read, so not malformed
    firsts = lockstep(server, 40)  # one rotation for the resolver: the subnets alias it
    assert all(len(counted) == 1 for counted in firsts.values()), firsts
    assert sum(firsts.values(), Counter()) == {"mx1": 120, "mx2": 40}


def test_explain_client_takes_a_subnet(server_factory, zone_dir: Path) -> None:
    server = server_factory(zone_dir)

    def explained(client: str) -> tuple[str, str]:
        result = run_authdns("explain", f"one.{ORIGIN}", "MX", "--json", "--client", client,
                             "--state-dir", server.state_dir, timeout=30)
        assert result.returncode == 0, result.stderr
        reply = json.loads(result.stdout)
        (rrset,) = [entry for entry in reply["rrsets"] if entry["section"] == "answer"]
        return reply["client"], next(m["member"].split(".")[0] for m in rrset["members"] if m["included"])

    subnet = dns.edns.ECSOption("198.51.100.0", 24)
    for _ in range(3):  # moves that subnet's rotation only
        ask(server, "one", subnet)
    for client, shown in (("198.51.100.0/24", "198.51.100.0/24"), ("198.51.100.9/32", "198.51.100.0/24"),
                          ("10.1.2.3/8", "10.0.0.0/8")):
        where, prediction = explained(client)
        assert where == shown
        address, length = client.split("/")
        assert prediction == first_exchange(ask(server, "one", dns.edns.ECSOption(address, int(length)))), client
    bad = run_authdns("explain", f"one.{ORIGIN}", "MX", "--client", "192.0.2.0/33", "--state-dir", server.state_dir)
    assert bad.returncode != 0 and "ADDRESS/LENGTH" in bad.stderr


UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def unbound_conf(work: Path, port: int, authdns_port: int) -> str:
    """A resolver on loopback that forwards each client's /24 as ECS to authdns
    (subnetcache module, send-client-subnet) and caches what it gets by its scope."""
    return (f'server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  username: ""\n  chroot: ""\n'
            f'  directory: "{work}"\n  pidfile: "{work}/unbound.pid"\n  logfile: ""\n  use-syslog: no\n'
            f'  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  do-ip6: no\n'
            f'  module-config: "subnetcache iterator"\n  send-client-subnet: 127.0.0.1\n'
            f'  max-client-subnet-ipv4: 24\n  prefetch: no\n  num-threads: 1\n'
            f'  local-zone: "test." nodefault\n'
            f'stub-zone:\n  name: "{ORIGIN}"\n  stub-addr: 127.0.0.1@{authdns_port}\n')


@pytest.mark.slow
@pytest.mark.skipif(not Path(UNBOUND).exists(), reason="unbound is not installed (apt-get install unbound)")
def test_through_unbound_each_client_subnet_gets_its_share(server_factory, tmp_path: Path) -> None:
    """Four clients in four /24s of loopback ask one unbound in lockstep. The MX has TTL
    0, so unbound's cache window for it is one second (its clock's unit): one round a
    second, and each client's answer is its subnet's next one. Without ECS every answer
    would move the one rotation of unbound's own address, and four clients in lockstep
    over a cycle of four would each get one exchanger."""
    zones = tmp_path / "zones"
    write_zone(zones, ORIGIN, ZONE.replace("ttl: 30", "ttl: 0"))
    server = server_factory(zones)
    port = free_port()
    work = tmp_path / "unbound"
    work.mkdir()
    (work / "unbound.conf").write_text(unbound_conf(work, port, server.port))
    log = (work / "unbound.log").open("w")
    unbound = subprocess.Popen([UNBOUND, "-d", "-c", str(work / "unbound.conf")], stdout=log, stderr=subprocess.STDOUT)
    try:
        clients = ["127.0.1.1", "127.0.2.1", "127.0.3.1", "127.0.4.1"]

        def resolved(source: str) -> str | None:
            query = dns.message.make_query(f"one.{ORIGIN}", "MX")
            try:
                reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2.0, source=source)
            except (dns.exception.Timeout, OSError):
                return None
            return first_exchange(reply) if reply.rcode() == dns.rcode.NOERROR and reply.answer else None

        wait_until(lambda: resolved("127.0.9.1"), timeout=20)
        firsts: dict[str, Counter] = {client: Counter() for client in clients}
        for _ in range(8):  # two cycles of four
            last = int(time.time())
            wait_until(lambda: int(time.time()) > last or None, timeout=3)  # the next cache window
            for client in clients:
                firsts[client][resolved(client)] += 1
        for client, counted in firsts.items():
            assert counted == {"mx1": 6, "mx2": 2}, (client, firsts)
    finally:
        unbound.terminate()
        try:
            unbound.wait(10)
        except subprocess.TimeoutExpired:
            unbound.kill()
            unbound.wait()
        log.close()
