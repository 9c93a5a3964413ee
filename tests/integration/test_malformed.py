"""Malformed and hostile packets sent to a real ``authdns serve`` over loopback.

Checks:

* packets shorter than the 12-octet header (0…11 octets) are dropped, and so is a packet
  with QR=1 (RFC 1035 §4.1.1: never answer an answer); the server answers the next good
  query — over UDP the next datagram we receive is that answer, so "dropped" is observed
  without waiting on a clock;
* QDCOUNT=0 and QDCOUNT=2 → FORMERR (RFC 9619), a truncated question → FORMERR with the
  query's ID, a header count promising records that are not there → FORMERR;
* compression pointer loops, pointers past the end and forward pointers in the
  question, an over-long label (0x40 length byte: RFC 6891 §5 retired extended labels)
  and a name over 255 octets (RFC 1035 §2.3.4) → FORMERR or drop, never SERVFAIL
  (which here means an internal error) and never a crash;
* opcodes IQUERY, STATUS, NOTIFY, UPDATE and unassigned ones → NOTIMP with the opcode and
  ID echoed;
* a hypothesis fuzz over UDP (random packets, random headers on real questions, and real
  queries with bytes flipped, truncated, inserted or overwritten): every reply echoes the
  ID, has QR=1, is no SERVFAIL and parses with dnspython; each packet is followed by a
  sentinel query that must be answered correctly; afterwards the server still answers
  and its log has no "Traceback";
* the same fuzz over TCP (framed garbage on one connection, then a sentinel), and raw
  unframed garbage streams; then a fresh connection is still answered.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ServerProcess, rrset_texts, stop_server
from support import (
    frame,
    header,
    query_wire,
    question_bytes,
    tcp_connect,
    tcp_exchange,
    tcp_read_message,
    udp_exchange,
    udp_replies_until,
)

APEX_A = {"example.test. 3600 IN A 192.0.2.10"}
SENTINEL_ID = 0xBEEF
GOOD = query_wire("example.test", "A", ident=0x1234)


def sentinel_id_for(packet: bytes) -> int:
    """An ID the packet before the sentinel does not carry, so replies cannot be confused."""
    if len(packet) >= 2 and struct.unpack_from("!H", packet)[0] == SENTINEL_ID:
        return SENTINEL_ID ^ 1
    return SENTINEL_ID


def check_sentinel(reply: bytes, ident: int = SENTINEL_ID) -> None:
    response = dns.message.from_wire(reply)
    assert response.id == ident
    assert response.rcode() == dns.rcode.NOERROR
    assert rrset_texts(response.answer) == APEX_A


def sentinel_wire(ident: int = SENTINEL_ID) -> bytes:
    return query_wire("example.test", "A", ident=ident)


def send_then_sentinel(server: ServerProcess, packet: bytes) -> list[bytes]:
    """Send ``packet`` and then a good query from one socket; return the replies that
    came before the good query's answer (UDP on loopback keeps order, and the server
    answers in arrival order)."""
    ident = sentinel_id_for(packet)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(packet, (server.host, server.port))
        sock.sendto(sentinel_wire(ident), (server.host, server.port))
        others, sentinel = udp_replies_until(sock, ident, timeout=2.0)
    check_sentinel(sentinel, ident)
    return others


def assert_sane_reply(packet: bytes, reply: bytes) -> None:
    """Any reply to anything: the query's ID, QR set, no internal error, parseable."""
    assert len(reply) >= 12
    ident, flags, *_ = header(reply)
    assert ident == struct.unpack_from("!H", packet)[0]
    assert flags & dns.flags.QR
    assert flags & 0xF != dns.rcode.SERVFAIL, f"SERVFAIL (internal error) for {packet!r}"
    if (flags >> 11) & 0xF != dns.opcode.UPDATE:  # dnspython reads UPDATE sections by RFC 2136 rules
        dns.message.from_wire(reply)  # raises if we sent something a client cannot read


def rcode_of(reply: bytes) -> int:
    return header(reply)[1] & 0xF


# ---------------------------------------------------------------- drops


@pytest.mark.parametrize("length", range(12))
def test_short_packets_dropped(shipped_server: ServerProcess, length: int) -> None:
    assert send_then_sentinel(shipped_server, GOOD[:length]) == []


def test_response_packets_dropped(shipped_server: ServerProcess) -> None:
    packet = bytearray(GOOD)
    packet[2] |= 0x80
    assert send_then_sentinel(shipped_server, bytes(packet)) == []
    # Also a response-looking packet that would otherwise be an error (QR=1, QDCOUNT=0).
    assert send_then_sentinel(shipped_server, bytes(packet[:4]) + b"\x00" * 8) == []


# ---------------------------------------------------------------- FORMERR


def with_counts(packet: bytes, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return packet[:4] + struct.pack("!HHHH", qd, an, ns, ar) + packet[12:]


FORMERR_CASES = {
    "qdcount-0-with-body": with_counts(GOOD, 0),
    "qdcount-0-header-only": with_counts(GOOD[:12], 0),
    "qdcount-2": with_counts(GOOD + GOOD[12:], 2),
    "qdcount-2-only-one-present": with_counts(GOOD, 2),
    "question-cut-in-name": GOOD[:18],
    "question-cut-in-type": GOOD[:len(GOOD) - 3],
    "question-cut-in-class": GOOD[:len(GOOD) - 1],
    "ancount-promises-missing-record": with_counts(GOOD, 1, an=1),
    "arcount-promises-missing-record": with_counts(GOOD, 1, ar=1),
}


@pytest.mark.parametrize("packet", FORMERR_CASES.values(), ids=FORMERR_CASES.keys())
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_formerr(shipped_server: ServerProcess, packet: bytes, tcp: bool) -> None:
    if tcp:
        with tcp_connect(shipped_server.host, shipped_server.port) as sock:
            reply = tcp_exchange(sock, packet)
            check_sentinel(tcp_exchange(sock, sentinel_wire()))  # the connection survives
    else:
        reply = udp_exchange(shipped_server.host, shipped_server.port, packet)
    assert header(reply)[0] == 0x1234, "the FORMERR keeps the query's ID"
    assert rcode_of(reply) == dns.rcode.FORMERR
    assert header(reply)[3] == 0, "no answer records in a FORMERR"
    assert_sane_reply(packet, reply)


def name_packet(qname_wire: bytes) -> bytes:
    return GOOD[:12] + qname_wire + b"\x00\x01\x00\x01"


BAD_NAME_CASES = {
    "pointer-to-itself": name_packet(b"\xc0\x0c"),
    "pointer-loop-two": name_packet(b"\x01a\xc0\x0e\xc0\x0c"),
    "pointer-past-end": name_packet(b"\xc0\xff"),
    "pointer-far-past-end": name_packet(b"\xff\xff"),
    "forward-pointer": name_packet(b"\x03abc\xc0\x13") + b"\x00",
    "reserved-label-type-0x40": name_packet(b"\x41abc\x00"),
    "reserved-label-type-0x80": name_packet(b"\x81abc\x00"),
    "label-length-past-end": GOOD[:12] + b"\x3fabc",
    "label-over-63-octets": name_packet(b"\x40" + b"a" * 64 + b"\x07example\x04test\x00"),
    "name-over-255-octets": name_packet(b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * 3 + b"\x07example\x04test\x00"),
}


@pytest.mark.parametrize("packet", BAD_NAME_CASES.values(), ids=BAD_NAME_CASES.keys())
def test_bad_names_formerr_or_drop(shipped_server: ServerProcess, packet: bytes) -> None:
    replies = send_then_sentinel(shipped_server, packet)
    assert len(replies) <= 1
    for reply in replies:
        assert_sane_reply(packet, reply)
        assert rcode_of(reply) == dns.rcode.FORMERR


# ---------------------------------------------------------------- opcodes


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 3, 6, 15],
                         ids=lambda o: dns.opcode.to_text(o) if o in (1, 2, 4, 5) else f"opcode{o}")
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_other_opcodes_notimp(shipped_server: ServerProcess, opcode: int, tcp: bool) -> None:
    packet = bytearray(query_wire("example.test", "SOA", ident=0x0F0F))
    packet[2] = (packet[2] & 0x87) | (opcode << 3)
    if tcp:
        with tcp_connect(shipped_server.host, shipped_server.port) as sock:
            reply = tcp_exchange(sock, bytes(packet))
    else:
        reply = udp_exchange(shipped_server.host, shipped_server.port, bytes(packet))
    ident, flags, _, ancount, nscount, _ = header(reply)
    assert ident == 0x0F0F
    assert (flags >> 11) & 0xF == opcode, "the opcode is echoed"
    assert flags & 0xF == dns.rcode.NOTIMP
    assert ancount == nscount == 0


def test_update_message_notimp(shipped_server: ServerProcess) -> None:
    """A real RFC 2136 UPDATE (zone section, a prerequisite and an update record)."""
    import dns.update

    update = dns.update.UpdateMessage("example.test")
    update.present("www")
    update.add("new", 300, "A", "192.0.2.99")
    reply = udp_exchange(shipped_server.host, shipped_server.port, update.to_wire())
    response = dns.message.from_wire(reply)
    assert response.rcode() == dns.rcode.NOTIMP
    assert response.opcode() == dns.opcode.UPDATE
    assert response.id == update.id
    assert rrset_texts(shipped_server.query("new.example.test", "A").answer) == set()


# ---------------------------------------------------------------- fuzz

REAL_QUERIES = [
    query_wire("example.test", "A"),
    query_wire("WwW.ExAmPlE.TeSt", "AAAA", use_edns=0),
    query_wire("pool.example.test", "MX", use_edns=0, payload=4096, want_dnssec=True),
    query_wire("_submission._tcp.example.test", "SRV", rd=True),
    query_wire("x.lab.example.test", "A", use_edns=0, options=[dns.edns.GenericOption(65001, b"abc")]),
    query_wire("alice.users.example.test", "TXT"),
    query_wire("version.bind", "TXT", rdclass="CH"),
    query_wire("25.2.0.192.in-addr.arpa", "PTR"),
    query_wire("example.org", "ANY"),
    dns.message.make_response(dns.message.make_query("example.test", "A")).to_wire(),
]


@st.composite
def mutated_queries(draw) -> bytes:
    packet = bytearray(draw(st.sampled_from(REAL_QUERIES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "counts", "pointer"]))
        position = draw(st.integers(0, max(len(packet) - 1, 0)))
        if kind == "flip" and packet:
            packet[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del packet[position:]
        elif kind == "insert":
            packet[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "overwrite" and packet:
            packet[position] = draw(st.integers(0, 255))
        elif kind == "counts" and len(packet) >= 12:
            index = draw(st.sampled_from([4, 6, 8, 10]))
            packet[index:index + 2] = struct.pack("!H", draw(st.sampled_from([0, 1, 2, 3, 255, 65535])))
        elif kind == "pointer" and packet:
            packet[position:position + 2] = struct.pack("!H", 0xC000 | draw(st.integers(0, 0x3FFF)))
    return bytes(packet)


@st.composite
def random_headers(draw) -> bytes:
    """A random 12-octet header (any flags, counts, opcode) on a real question."""
    question = question_bytes(draw(st.sampled_from(REAL_QUERIES[:9])))
    counts = draw(st.tuples(*[st.sampled_from([0, 1, 2, 7, 65535])] * 4))
    head = struct.pack("!HH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535))) + struct.pack("!HHHH", *counts)
    return head + question + draw(st.binary(max_size=20))


PACKETS = st.one_of(
    st.binary(min_size=0, max_size=600),
    mutated_queries(),
    random_headers(),
)


def assert_clean_log(server: ServerProcess) -> None:
    """Stop the server and read its whole log: no traceback, no internal error."""
    stop_server(server.process)
    assert server.process.returncode == 0
    server.wait_for_log(r"\bstopping\b")
    assert "Traceback" not in server.log_text(), server.log_text()
    assert "internal error" not in server.log_text(), server.log_text()


@pytest.mark.slow
def test_udp_fuzz(zone_dir: Path, server_factory) -> None:
    server = server_factory(zone_dir)

    @settings(max_examples=2000, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(packet=PACKETS)
    def exchange(packet: bytes) -> None:
        for reply in send_then_sentinel(server, packet):
            assert_sane_reply(packet, reply)

    exchange()
    check_sentinel(udp_exchange(server.host, server.port, sentinel_wire()))
    assert_clean_log(server)


@pytest.mark.slow
def test_tcp_fuzz(zone_dir: Path, server_factory) -> None:
    server = server_factory(zone_dir)
    connection: list[socket.socket] = []

    def sock() -> socket.socket:
        if not connection:
            connection.append(tcp_connect(server.host, server.port, timeout=2.0))
        return connection[0]

    @settings(max_examples=600, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(packet=PACKETS)
    def exchange(packet: bytes) -> None:
        current = sock()
        ident = sentinel_id_for(packet)
        current.sendall(frame(packet) + frame(sentinel_wire(ident)))
        for _ in range(2):  # at most one reply to the garbage, then the sentinel's
            reply = tcp_read_message(current)
            if not reply:
                # An empty framed message (length 0) may end the connection; nothing else may.
                connection.pop().close()
                assert len(packet) == 0, f"server closed the connection on {packet!r}"
                return
            if header(reply)[0] == ident:
                check_sentinel(reply, ident)
                return
            assert_sane_reply(packet, reply)
        raise AssertionError("no answer to the sentinel after the garbage")

    try:
        exchange()
    finally:
        for open_sock in connection:
            open_sock.close()
    with tcp_connect(server.host, server.port) as fresh:
        check_sentinel(tcp_exchange(fresh, sentinel_wire()))
    assert_clean_log(server)


def test_tcp_unframed_garbage(zone_dir: Path, server_factory) -> None:
    """Raw byte streams (length prefixes that lie, half messages, then EOF)."""
    server = server_factory(zone_dir)

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(stream=st.binary(min_size=1, max_size=300))
    def garbage(stream: bytes) -> None:
        with tcp_connect(server.host, server.port, timeout=2.0) as sock:
            try:
                sock.sendall(stream)
                sock.shutdown(socket.SHUT_WR)  # EOF: a half message must not wait for the query timeout
                for _ in range(64):
                    if not tcp_read_message(sock):
                        break
            except (ConnectionResetError, BrokenPipeError):
                pass

    garbage()
    with tcp_connect(server.host, server.port) as fresh:
        check_sentinel(tcp_exchange(fresh, sentinel_wire()))
    check_sentinel(udp_exchange(server.host, server.port, sentinel_wire()))
    assert_clean_log(server)
