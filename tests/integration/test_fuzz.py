"""Fuzzing: garbage and near-DNS messages never crash the server or go unanswered wrongly.

* hypothesis builds DNS-shaped messages (valid-ish headers and questions, compression
  pointers that loop or point past the end, records cut short, random EDNS options) and
  feeds them to the responder in process: it never raises, never counts an internal
  error, and answers with the query's ID and QR set, or not at all;
* 100,000 packets (mutations of real queries and the same kinds of structures, from a
  seeded generator) go to a running server with two workers, in batches of 10,000;
  after each batch a valid query is answered correctly, and at the end the log holds no
  traceback, no internal error and no worker death.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authdns.configuration.config import ServerConfig
from authdns.balancing.ordering import Balancer
from authdns.answering.query import Via
from authdns.engine.responder import Responder
from authdns.zones.loader import load_snapshot
from authdns.engine.state import StateHolder
from authdns.transfer.zonetransfer import TransferResponder, TransferStream
from conftest import SHIPPED_ZONES, ServerProcess, start_server, stop_server

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

TOTAL, BATCH = 100_000, 10_000
NAMES = ["example.test.", "pool.example.test.", "www.example.test.", "x.users.example.test.", "nope.example.test.",
         "example.net.", "10.2.0.192.in-addr.arpa.", "elsewhere.invalid.", "lab.example.test."]
TYPES = ["A", "AAAA", "MX", "NS", "SOA", "TXT", "ANY", "AXFR", "IXFR", "CNAME", "SRV", "CAA", "PTR"]


def real_queries() -> list[bytes]:
    found = []
    for name in NAMES:
        for rdtype in TYPES:
            found.append(dns.message.make_query(name, rdtype).to_wire())
            found.append(dns.message.make_query(name, rdtype, use_edns=0, payload=4096, want_dnssec=True,
                                                options=[dns.edns.GenericOption(10, b"\x01" * 8)]).to_wire())
    return found


# -- structures --------------------------------------------------------------------------

labels = st.binary(min_size=0, max_size=70).map(lambda b: bytes([min(len(b), 255)]) + b)
pointer = st.integers(0, 0x3FFF).map(lambda offset: struct.pack("!H", 0xC000 | offset))


@st.composite
def names(draw) -> bytes:
    parts = draw(st.lists(labels, max_size=6))
    end = draw(st.sampled_from([b"\x00", b"", b"\xc0\x0c", b"\xc0\x0e", b"\xff"]) | pointer)
    return b"".join(parts) + end


@st.composite
def edns_options(draw) -> bytes:
    options = b""
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.binary(max_size=40))
        claimed = draw(st.sampled_from([len(data), len(data) + 5, 0, 65535]))
        options += struct.pack("!HH", draw(st.integers(0, 65535)), claimed) + data
    return options


@st.composite
def messages(draw) -> bytes:
    header = struct.pack("!HHHHHH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535)),
                         draw(st.sampled_from([0, 1, 2, 65535])), draw(st.sampled_from([0, 0, 1, 3])),
                         draw(st.sampled_from([0, 1, 5])), draw(st.sampled_from([0, 1, 2])))
    body = draw(names()) + struct.pack("!HH", draw(st.sampled_from([1, 15, 28, 255, 252, 251, 41, 0, 65535])),
                                       draw(st.sampled_from([1, 3, 254, 255, 0])))
    if draw(st.booleans()):
        options = draw(edns_options())
        body += b"\x00" + struct.pack("!HHBBHH", 41, draw(st.integers(0, 65535)), draw(st.integers(0, 255)),
                                      draw(st.integers(0, 2)), draw(st.sampled_from([0, 0x8000, 0xFFFF])),
                                      len(options)) + options
    if draw(st.booleans()):
        body += draw(names()) + draw(st.binary(max_size=12))  # a record cut short
    cut = draw(st.integers(0, len(header) + len(body)))
    return (header + body)[: cut if draw(st.booleans()) else None]


@pytest.fixture(scope="module")
def responder() -> Responder:
    holder = StateHolder()
    holder.publish(snapshot=load_snapshot(SHIPPED_ZONES).snapshot)
    config = ServerConfig()
    return Responder(holder, config, Balancer(), transfer=TransferResponder(holder, config))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packet=messages() | st.binary(max_size=600))
def test_responder_never_fails_on_hostile_messages(responder: Responder, packet: bytes) -> None:
    for via in (Via.UDP, Via.TCP):
        reply = responder.respond(packet, via, ("127.0.0.1", 5353))
        assert responder.counters.internal_errors == 0, packet
        if isinstance(reply, TransferStream):  # a transfer over TCP: read, its TSIG checked
            assert via is Via.TCP and isinstance(reply.query, (bytes, dns.message.Message)), packet
        elif reply is not None:
            assert reply[:2] == packet[:2] and reply[2] & 0x80, (packet, reply)


# -- against the running server ------------------------------------------------------------

def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if choice < 0.35 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif choice < 0.55 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.7:
            del data[rng.randrange(len(data) + 1):]
        elif choice < 0.85:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        else:
            at = rng.randrange(12, max(13, len(data)))
            data[at:at] = b"\xc0" + bytes([rng.choice([12, at & 0xFF, 0xFF])])  # pointers: loops, self, beyond
    return bytes(data)


def structured(rng: random.Random) -> bytes:
    header = struct.pack("!HHHHHH", rng.randrange(65536), rng.choice([0, 0x0100, 0x8000, 0x7800, rng.randrange(65536)]),
                         rng.choice([0, 1, 2, 40000]), rng.choice([0, 1]), rng.choice([0, 1]), rng.choice([0, 1, 2]))
    name = b"".join(bytes([n]) + rng.randbytes(n) for n in (rng.randrange(64) for _ in range(rng.randrange(5))))
    name += rng.choice([b"\x00", b"\xc0\x0c", b"\xc0\x10", b"\xff\xff", b""])
    body = name + struct.pack("!HH", rng.choice([1, 15, 28, 41, 251, 252, 255, rng.randrange(65536)]),
                              rng.choice([1, 3, 255, rng.randrange(65536)]))
    if rng.random() < 0.5:
        options = b"".join(struct.pack("!HH", rng.randrange(65536), n) + rng.randbytes(rng.randrange(n + 3))
                           for n in (rng.randrange(20) for _ in range(rng.randrange(4))))
        body += b"\x00\x00\x29" + struct.pack("!HIH", rng.randrange(65536), rng.randrange(1 << 32), len(options)) + options
    packet = header + body
    return packet[: rng.randrange(len(packet) + 1)] if rng.random() < 0.3 else packet


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    import shutil

    zones = tmp_path_factory.mktemp("fuzz") / "zones"
    shutil.copytree(SHIPPED_ZONES, zones)
    started = start_server(zones, workers=2)
    yield started
    stop_server(started.process)


def valid_answer(server: ServerProcess) -> None:
    for attempt in range(3):  # the flood may still fill the socket: a bounded retry
        try:
            reply = server.query("example.test", "MX", timeout=2)
            break
        except dns.exception.Timeout:
            if attempt == 2:
                raise
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert {record.exchange.to_text() for record in reply.answer[0]} == {"mail.example.test.", "mail2.example.test."}


def test_hundred_thousand_hostile_packets(server: ServerProcess) -> None:
    rng = random.Random(20261123)
    corpus = real_queries()
    sent = replies = 0
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        while sent < TOTAL:
            for _ in range(BATCH):
                packet = mutate(rng, rng.choice(corpus)) if rng.random() < 0.6 else structured(rng)
                try:
                    sock.sendto(packet, (server.host, server.port))
                except (BlockingIOError, OSError):
                    pass  # a full send buffer: the packet counts as sent garbage all the same
                sent += 1
                if sent % 64 == 0:
                    while True:
                        try:
                            sock.recv(65535)
                            replies += 1
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
            valid_answer(server)
            assert server.process.poll() is None
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {sent} packets in {elapsed:.1f} s, {replies} replies read; a valid query answered after each "
          f"batch of {BATCH}")
    log = server.log_text()
    for bad in ("Traceback", "internal error", "worker exited"):
        assert bad not in log, log[-3000:]
