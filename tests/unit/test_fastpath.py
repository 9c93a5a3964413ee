"""The fast path answers byte for byte what the slow path would.

The reference is the slow path written out here (dnslib parse → resolve → Balancer.apply
→ render), with a Balancer of its own fed the same queries, so rotation states agree.
Each query is sent several times, so every cached entry is used and every variant of a
balanced answer (each rotation, each weighted pick) is spliced at least once.

Also: ``question_key`` agrees with dnspython on what a question is (hypothesis), never
raises on arbitrary bytes, refuses what it must leave to the slow path; the cache stays
bounded under a flood of random names; a reload keeps the entries of unchanged zones.
"""

from __future__ import annotations

import random
import shutil
from types import MappingProxyType
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnslib import QTYPE

from authdns.base import names
from authdns.base.hostport import client_prefix
from authdns.answering.answer import resolve
from authdns.configuration.config import ServerConfig
from authdns.health.monitor import HealthView, MemberHealth, Status
from authdns.balancing.ordering import Balancer
from authdns.balancing.overrides import Override, Overrides
from authdns.answering.query import Query, Reject, Via, parse_query
from authdns.answering.render import render, render_reject
from authdns.engine.cache import Static
from authdns.engine.responder import Responder
from authdns.zones.loader import load_snapshot
from authdns.engine.state import StateHolder
from authdns.answering.wire import question_key

ROOT = Path(__file__).resolve().parents[2]

BALANCED = """
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  rr: {MX: ['10 mx1', '10 mx2', '10 mx3', '20 host']}
  w:
    MX:
      policy: weighted
      records:
        - {preference: 10, exchange: mx1, weight: 3}
        - {preference: 10, exchange: mx2, weight: 1}
  p: {MX: {promote: true, answer: 1, records: ['10 mx1', '10 mx2', '30 mx3']}}
  s:
    MX:
      policy: weighted
      answer: 2
      records:
        - {preference: 10, exchange: mx1, weight: 2}
        - {preference: 10, exchange: mx2, weight: 1}
        - {preference: 10, exchange: mx3, weight: 1}
  host: {A: [192.0.2.21, 192.0.2.22, 192.0.2.23], AAAA: ["2001:db8::21", "2001:db8::22"]}
  mx1: {A: 192.0.2.11}
  mx2: {A: 192.0.2.12}
  mx3: {A: 192.0.2.13}
  big: {TXT: [%s]}
""" % ", ".join(f'"{"x" * 200}-{i}"' for i in range(12))

NAMES = ["example.test.", "EXAMPLE.Test.", "www.example.test.", "pool.example.test.", "smtp.example.test.",
         "weighted.example.test.", "alice.users.example.test.", "nope.example.test.", "lab.example.test.",
         "www.lab.example.test.", "webmail.example.net.", "example.net.", "10.2.0.192.in-addr.arpa.",
         "elsewhere.invalid.", "_tcp.example.test.", "rr.bal.test.", "w.bal.test.", "P.bal.TEST.",
         "host.bal.test.", "big.bal.test.", "s.bal.test."]
TYPES = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "SRV", "ANY", "CNAME", "PTR", "CAA", "HINFO"]


def state(tmp_path: Path) -> StateHolder:
    zone_dir = tmp_path / "zones"
    shutil.copytree(ROOT / "zones", zone_dir)
    (zone_dir / "bal.test.yaml").write_text(BALANCED)
    holder = StateHolder()
    holder.publish(snapshot=load_snapshot(zone_dir).snapshot)
    return holder


def reference(packet: bytes, tcp: bool, holder: StateHolder, balancer: Balancer, udp_max: int,
              peer: tuple | None = None) -> bytes:
    """The slow path, spelled out (``peer``: whose rotation it moves, as the responder keys it)."""
    query = parse_query(packet, Via.TCP if tcp else Via.UDP, udp_max)
    if isinstance(query, Reject):
        return render_reject(query, udp_max)
    current = holder.current
    client = client_prefix(peer[0]) if peer is not None else None
    answer = balancer.apply(resolve(current.snapshot, query.qname, query.qtype), current.health, current.overrides,
                            client)
    return render(query, answer, udp_max)


def queries() -> list[tuple[bytes, bool]]:
    found = []
    for name in NAMES:
        for rdtype in TYPES:
            for edns, payload, do in ((None, 0, False), (0, 1232, False), (0, 4096, True), (0, 512, False),
                                      (0, 100, False)):
                for rd in (False, True):
                    message = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload, want_dnssec=do)
                    if not rd:
                        message.flags &= ~dns.flags.RD
                    else:
                        message.flags |= dns.flags.CD
                    for tcp in (False, True):
                        found.append((message.to_wire(), tcp))
    return found


@pytest.mark.slow
def test_fast_path_equals_slow_path(tmp_path: Path) -> None:
    holder = state(tmp_path)
    config = ServerConfig()
    fast = Responder(holder, config, Balancer())
    slow_balancer = Balancer()
    cases = queries()
    for round_ in range(7):  # 7 > every variant count here (3 rotations, 4 weighted picks)
        for packet, tcp in cases:
            packet = bytes([round_ % 256, 7]) + packet[2:]  # a new ID each round
            expected = reference(packet, tcp, holder, slow_balancer, config.udp_payload)
            got = fast.respond(packet, Via.TCP if tcp else Via.UDP)
            assert got == expected, (dns.message.from_wire(packet).question, tcp, round_)
    assert fast.fast_hits >= 6 * len(cases) * 0.9, "the cache answered the repeats"
    entries = holder.current.cache.entries
    assert any(entry.__class__.__name__ == "Dynamic" and len(entry.variants) >= 3 for entry in entries.values())
    cycled = [entry for entry in entries.values() if entry.__class__.__name__ == "Dynamic" and entry.orders]
    assert any(len(entry.variants) >= 3 for entry in cycled)
    assert counted(fast.balancer) == counted(slow_balancer)


def counted(balancer: Balancer) -> dict:
    return {key: (found.first, found.given, found.split) for key, found in balancer.counters.items()}


@pytest.mark.slow
def test_fast_path_follows_drains_and_health_like_the_slow_path(tmp_path: Path) -> None:
    """Orders memoised per health view and overrides (orders.Orders) must move on when
    either changes, and stay in step with the slow path across the change."""
    holder = state(tmp_path)
    config = ServerConfig()
    fast = Responder(holder, config, Balancer())
    slow_balancer = Balancer()
    cases = [case for case in queries() if b"\x02rr\x03bal" in case[0].lower() or b"\x04host\x03bal" in case[0].lower()]
    assert cases
    mx2 = (names.from_text("rr.bal.test."), QTYPE.MX, "mx2.bal.test.")
    address = (names.from_text("host.bal.test."), QTYPE.A, "192.0.2.22")
    steps = [Overrides({mx2: Override(drained=True)}), Overrides({address: Override(drained=True)}),
             Overrides({mx2: Override(weight=0)}), Overrides({})]
    for step, overrides in enumerate(steps):
        holder.publish(overrides=overrides)
        for round_ in range(4):
            for packet, tcp in cases:
                packet = bytes([round_, step]) + packet[2:]
                expected = reference(packet, tcp, holder, slow_balancer, config.udp_payload)
                assert fast.respond(packet, Via.TCP if tcp else Via.UDP) == expected, (step, round_)
        assert counted(fast.balancer) == counted(slow_balancer)


@pytest.mark.parametrize("name, rdtype, period", [
    ("rr.bal.test.", "MX", 6),  # two rotors: the pool's three exchangers, host's addresses in additional
    ("w.bal.test.", "MX", 4),  # weighted 3:1
    ("P.bal.TEST.", "MX", 2),  # promote, answer: 1
    ("s.bal.test.", "MX", 2),  # weighted 2:1:1, answer: 2: mx1 (1/2) in every answer, the other place 1:1
    ("host.bal.test.", "A", 3),
])
def test_every_deterministic_policy_is_replayed(tmp_path: Path, name: str, rdtype: str, period: int) -> None:
    """Weighted, promoted, subset and multi-rotor answers are planned once per state of
    their rotors (orders.Orders) and replayed after: the Balancer plans at most a period
    (and the state rotors start in), and every answer is still the slow path's."""
    holder = state(tmp_path)
    config = ServerConfig()
    fast = Responder(holder, config, Balancer())
    slow_balancer = Balancer()
    rounds = 10 * period
    for round_ in range(rounds):
        packet = bytes([round_, 1]) + dns.message.make_query(name, rdtype).to_wire()[2:]
        assert fast.respond(packet, Via.UDP) == reference(packet, False, holder, slow_balancer, config.udp_payload)
    assert slow_balancer.planned == rounds
    assert fast.balancer.planned <= period + 1, "answers after the first period were replayed, not planned"
    (entry,) = [entry for entry in holder.current.cache.entries.values() if entry.__class__.__name__ == "Dynamic"]
    assert entry.orders.states <= period + 1 and len(entry.variants) <= period
    assert counted(fast.balancer) == counted(slow_balancer)


SHARED_ROTORS = """
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  m: {MX: {answer: 1, records: ['10 mx1', '10 mx2', '20 mx3']}}
  w: {MX: {policy: weighted, records: [{preference: 10, exchange: mx1, weight: 2}, {preference: 10, exchange: mx2, weight: 1}]}}
  mx1: {A: {policy: weighted, records: [{address: 192.0.2.11, weight: 2}, 192.0.2.12, 192.0.2.13]}}
  mx2: {A: [192.0.2.21, 192.0.2.22]}
  mx3: {A: {policy: weighted, records: [192.0.2.31, 192.0.2.32]}}
  # one balanced wildcard RRset twice in one answer (a.h and b.h), a plain exchanger between
  h: {MX: {policy: weighted, records: [{preference: 10, exchange: a.h, weight: 2}, '10 mx2', '10 b.h']}}
  "*.h": {A: {policy: weighted, records: [{address: 192.0.2.41, weight: 2}, 192.0.2.42]}}
"""


@pytest.mark.parametrize("seed", range(40))
def test_shared_rotors_stay_in_step_through_health_and_drain_changes(tmp_path: Path, seed: int) -> None:
    """Random interleavings of MX answers (whose additional section moves the exchangers'
    address rotors, or leaves them alone when answer: 1 or a drain drops the exchanger),
    direct address queries sharing those rotors, with and without EDNS (two cache
    entries, two Orders, one set of rotors), and health and drain changes between them:
    the fast path answers the slow path's bytes and counts what it counts, last-given
    times included. Regression: a replay once wrote back the credit of a rotor its plan
    had not touched, and the rotations drifted apart for good once an epoch came back.
    Queries come from several clients (rotors.py: a rotation each, dealt from the shared
    one), a table small enough to evict (limit 3), or none kept (limit 0)."""
    rng = random.Random(seed)
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    (zone_dir / "bal.test.yaml").write_text(SHARED_ROTORS)
    holder = StateHolder()
    holder.publish(snapshot=load_snapshot(zone_dir).snapshot)
    now = [0.0]
    config = ServerConfig()
    limit = (0, 3, 65_536)[seed % 3]
    fast = Responder(holder, config, Balancer(clock=lambda: now[0], client_rotors=limit))
    slow_balancer = Balancer(clock=lambda: now[0], client_rotors=limit)
    peers = [None, ("127.0.0.1", 5300), ("127.0.0.9", 5301), ("192.0.2.7", 53), ("2001:db8::1", 53, 0, 0),
             ("::ffff:198.51.100.2", 53, 0, 0)]

    def member(owner: str, rtype: int, text: str) -> tuple:
        return (names.from_text(owner), rtype, text)

    members = [member("mx1.bal.test.", QTYPE.A, "192.0.2.13"), member("mx1.bal.test.", QTYPE.A, "192.0.2.11"),
               member("m.bal.test.", QTYPE.MX, "mx1.bal.test."), member("mx3.bal.test.", QTYPE.A, "192.0.2.32"),
               member("w.bal.test.", QTYPE.MX, "mx2.bal.test."), member("mx2.bal.test.", QTYPE.A, "192.0.2.21")]
    questions = [("m.bal.test.", "MX"), ("w.bal.test.", "MX"), ("mx1.bal.test.", "A"), ("mx2.bal.test.", "A"),
                 ("mx3.bal.test.", "A"), ("h.bal.test.", "MX"), ("a.h.bal.test.", "A")]
    for step in range(400):
        roll = rng.random()
        if roll < 0.06:
            holder.publish(health=HealthView(MappingProxyType({
                key: MemberHealth(rng.choice([Status.DOWN, Status.DEGRADED]), 0.0, None, None, ())
                for key in rng.sample(members, rng.choice([0, 0, 1, 2]))})))
        elif roll < 0.09:
            holder.publish(overrides=Overrides({
                key: rng.choice([Override(drained=True), Override(weight=3)])
                for key in rng.sample(members, rng.choice([0, 0, 1]))}))
        else:
            now[0] += 1.0
            name, rdtype = rng.choice(questions)
            message = dns.message.make_query(name, rdtype, use_edns=0 if rng.random() < 0.3 else None)
            packet = bytes([step % 256, 9]) + message.to_wire()[2:]
            peer = rng.choice(peers)
            expected = reference(packet, False, holder, slow_balancer, config.udp_payload, peer)
            assert fast.respond(packet, Via.UDP, peer) == expected, (seed, step, name, rdtype, peer)
            # the client table too, in order: what it evicts next must agree (rotors.deal)
            assert ([(key, rotor.turn, rotor.smooth.credit) for key, rotor in fast.balancer.rotors.clients.items()]
                    == [(key, rotor.turn, rotor.smooth.credit)
                        for key, rotor in slow_balancer.rotors.clients.items()]), (seed, step)
    assert timed(fast.balancer) == timed(slow_balancer)
    if limit:
        assert 0 < len(fast.balancer.rotors.clients) <= limit


def test_replay_leaves_alone_a_rotor_its_plan_did_not_move(tmp_path: Path) -> None:
    """answer: 1 over two exchangers, the first with weighted addresses: an answer giving
    mx2 does not plan mx1's addresses, so replaying it must not write back their credit
    (it once wrote a stale one, and after the epoch came back every mx1 A answer differed)."""
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    (zone_dir / "bal.test.yaml").write_text("""
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  m: {MX: {answer: 1, records: ['10 mx1', '10 mx2']}}
  mx1: {A: {policy: weighted, records: [192.0.2.11, 192.0.2.12, 192.0.2.13]}}
  mx2: {A: 192.0.2.20}
""")
    holder = StateHolder()
    holder.publish(snapshot=load_snapshot(zone_dir).snapshot)
    config = ServerConfig()
    fast = Responder(holder, config, Balancer())
    slow_balancer = Balancer()
    down = HealthView(MappingProxyType({(names.from_text("mx1.bal.test."), QTYPE.A, "192.0.2.13"):
                                        MemberHealth(Status.DOWN, 0.0, None, None, ())}))
    steps = [("m", "MX"), down, ("m", "MX"), ("m", "MX"), ("mx1", "A"), ("m", "MX"),
             HealthView(MappingProxyType({})), ("mx1", "A"), ("mx1", "A"), ("mx1", "A")]
    for number, step in enumerate(steps):
        if isinstance(step, HealthView):
            holder.publish(health=step)
            continue
        packet = bytes([number, 3]) + dns.message.make_query(f"{step[0]}.bal.test.", step[1]).to_wire()[2:]
        assert fast.respond(packet, Via.UDP) == reference(packet, False, holder, slow_balancer, config.udp_payload), number


def timed(balancer: Balancer) -> tuple:
    return ({key: (found.first, found.given, found.expires, found.last_given, found.split)
             for key, found in balancer.counters.items()},
            balancer.fail_open_answers)


def test_a_full_cache_answers_balanced_queries_without_new_orders(tmp_path: Path) -> None:
    """Once the cache is full, a balanced answer it cannot store is ordered like an
    uncached one: the same bytes and counts, and no Orders kept for a single query
    (they once piled up to LIVE_ORDERS_LIMIT, then every cached entry lost its own)."""
    holder = state(tmp_path)
    config = ServerConfig()
    fast = Responder(holder, config, Balancer())
    slow_balancer = Balancer()
    holder.current.cache.limit = 0  # full from the start
    for payload in range(1200, 1300):  # a new size class each: a new cache key each
        message = dns.message.make_query("rr.bal.test.", "MX", use_edns=0, payload=payload)
        packet = bytes([payload % 256, 5]) + message.to_wire()[2:]
        assert fast.respond(packet, Via.UDP) == reference(packet, False, holder, slow_balancer, config.udp_payload)
    assert fast.balancer.live_orders == {} and len(holder.current.cache) == 0
    assert counted(fast.balancer) == counted(slow_balancer)


def test_reload_keeps_entries_of_unchanged_zones(tmp_path: Path) -> None:
    holder = state(tmp_path)
    fast = Responder(holder, ServerConfig(), Balancer())
    for name in ("example.test.", "example.net.", "host.bal.test."):
        fast.respond(dns.message.make_query(name, "A").to_wire(), Via.UDP)
    before = set(holder.current.cache.entries)
    (tmp_path / "zones" / "bal.test.yaml").write_text(BALANCED.replace("ttl: 60", "ttl: 61"))
    holder.publish(snapshot=load_snapshot(tmp_path / "zones", holder.current.snapshot).snapshot)
    after = set(holder.current.cache.entries)
    assert len(before) == 3 and len(after) == 2, "only bal.test's entry is gone"
    holder.publish(health=holder.current.health)
    assert set(holder.current.cache.entries) == after, "a health change keeps every entry"


@pytest.mark.slow
def test_random_name_flood_stays_bounded(tmp_path: Path) -> None:
    holder = state(tmp_path)
    fast = Responder(holder, ServerConfig(), Balancer())
    limit = holder.current.cache.negative_limit
    for index in range(limit + 5000):
        fast.respond(dns.message.make_query(f"r{index}.example.test.", "A").to_wire(), Via.UDP)
    assert len(holder.current.cache.negatives) == limit
    assert len(holder.current.cache) <= limit + 10


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b"." not in b and b"\\" not in b),
                    min_size=0, max_size=5),
    rdtype=st.integers(min_value=1, max_value=65535),
    rdclass=st.sampled_from([1, 3, 4, 254, 255]),
    edns=st.booleans(),
)
def test_question_key_agrees_with_dnspython(labels: list[bytes], rdtype: int, rdclass: int, edns: bool) -> None:
    name = dns.name.Name([*labels, b""])
    message = dns.message.make_query(name, rdtype, rdclass, use_edns=0 if edns else None)
    wire = message.to_wire()
    found = question_key(wire, False, 1232)
    if rdtype in (251, 252):
        assert found is None
        return
    assert found is not None
    key, end = found
    parsed = dns.message.from_wire(wire)
    question = parsed.question[0]
    assert end == 12 + len(name.to_wire()) + 4
    assert key.startswith(question.name.canonicalize().to_wire() + rdtype.to_bytes(2, "big") + rdclass.to_bytes(2, "big"))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80))
def test_question_key_never_raises(packet: bytes) -> None:
    found = question_key(packet, False, 1232)
    if found is not None:
        assert found[1] <= len(packet)


def test_question_key_leaves_the_unusual_to_the_slow_path() -> None:
    base = dns.message.make_query("example.test.", "A").to_wire()
    assert question_key(base, False, 1232) is not None
    response = bytes([base[0], base[1], base[2] | 0x80]) + base[3:]
    assert question_key(response, False, 1232) is None  # QR
    notify = bytes([base[0], base[1], (base[2] & 0x87) | (4 << 3)]) + base[3:]
    assert question_key(notify, False, 1232) is None  # opcode
    assert question_key(base + b"\x00", False, 1232) is None  # trailing octet
    pointer = base[:12] + b"\xc0\x0c" + base[-4:]
    assert question_key(pointer, False, 1232) is None  # compression in the question
    with_option = dns.message.make_query("example.test.", "A", use_edns=0, options=[
        dns.edns.GenericOption(65001, b"x")]).to_wire()
    assert question_key(with_option, False, 1232) is None  # EDNS options
    version1 = dns.message.make_query("example.test.", "A", use_edns=1).to_wire()
    assert question_key(version1, False, 1232) is None  # BADVERS is the slow path's


def test_a_cache_hit_carries_the_same_reply_key_as_the_slow_path(tmp_path: Path) -> None:
    """RRL and the query log read ``Responder.reply_key``: a cached answer (static or
    balanced) must report the key the engine gave it, and each query's key is its own
    (a previous query's never lingers)."""
    holder = state(tmp_path)
    responder = Responder(holder, ServerConfig(), Balancer())
    for name in NAMES:
        for rdtype in TYPES:
            packet = dns.message.make_query(name, rdtype, use_edns=0).to_wire()
            responder.respond(packet, Via.UDP)
            slow = responder.reply_key
            query = parse_query(packet, Via.UDP, 1232)
            assert isinstance(query, Query)
            assert slow == resolve(holder.current.snapshot, query.qname, query.qtype).key(query.qname, query.qtype)
            responder.respond(b"\x00\x01\x01", Via.UDP)  # too short: dropped, and no key of the last
            assert responder.reply_key == b""
            hits = responder.fast_hits
            responder.respond(packet, Via.UDP)
            assert responder.fast_hits == hits + 1 and responder.reply_key == slow, (name, rdtype)


def test_a_large_pool_is_replayed_and_rendered_once_per_order(tmp_path: Path) -> None:
    """Round robin over 300 members with answer: 4 has 300 orders: every one is planned
    and rendered once, then replayed (a second cycle plans nothing), and a new health
    view (one more member down) renders again only the orders it changed; with every member
    down (fail open) the answer is one precompiled variant, whatever the pool's size."""
    members = 300
    records = "".join(f"        - 10.1.{index // 250}.{index % 250 + 1}\n" for index in range(members))
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    (zone_dir / "big.test.yaml").write_text(f"""checks:
  smtp: {{kind: smtp, interval: 1, timeout: 0.5}}
records:
  "@":
    SOA: {{serial: 1}}
    NS: ns1
  ns1: {{A: 192.0.2.1}}
  pool:
    A:
      check: smtp
      answer: 4
      records:
{records}""")
    holder = StateHolder()
    holder.publish(snapshot=load_snapshot(zone_dir).snapshot)
    name = names.from_text("pool.big.test.")
    keys = [(name, QTYPE.A, f"10.1.{index // 250}.{index % 250 + 1}") for index in range(members)]
    up = {key: MemberHealth(Status.UP, 0.0, 0.001, None, ()) for key in keys}
    up[keys[0]] = MemberHealth(Status.DOWN, 0.0, None, None, ())  # the short TTL already: no change of TTL below
    holder.publish(health=HealthView(MappingProxyType(dict(up))))
    balancer = Balancer()
    fast = Responder(holder, ServerConfig(), balancer)
    packet = dns.message.make_query("pool.big.test.", "A").to_wire()

    def ask(times: int) -> list[bytes]:
        return [fast.respond(packet, Via.UDP) for _ in range(times)]

    first = ask(members)
    assert balancer.planned == members - 1 and len(set(first)) == members - 1  # a whole cycle, and one more
    assert ask(members - 1) == first[1:] and balancer.planned == members - 1, "the second cycle is replayed"
    (entry,) = [entry for entry in holder.current.cache.entries.values() if entry.__class__ is not Static]
    rendered = len(entry.rendered)
    assert rendered == members - 1
    holder.publish(health=HealthView(MappingProxyType({**up, keys[5]: MemberHealth(Status.DOWN, 0.0, None, None, ())})))
    ask(members)
    assert len(entry.rendered) - rendered <= 8, "only the orders around the member that went down are new"
    down = {key: MemberHealth(Status.DOWN, 0.0, None, None, ()) for key in keys}
    holder.publish(health=HealthView(MappingProxyType(down)))
    planned = balancer.planned
    replies = ask(50)
    assert len(set(replies)) == 1 and balancer.planned == planned + 1, "fail open: one answer, precompiled"
    assert dns.message.from_wire(replies[0]).flags & dns.flags.TC or \
        len(dns.message.from_wire(replies[0]).answer[0]) == members
