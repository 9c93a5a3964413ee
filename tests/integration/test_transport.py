"""Transports of a real ``authdns serve``: UDP and TCP, IPv4 and IPv6, EDNS(0),
truncation, RFC 7766 connection handling and 0x20 case echo.

Checks:

* UDP and TCP answer on 127.0.0.1, and on ``[::1]`` when the machine has it; several
  ``--listen`` addresses at once each answer on UDP and TCP (the log names them all);
* EDNS(0) (RFC 6891): an OPT in the response iff the query had one (NOERROR, NXDOMAIN,
  REFUSED, NOTIMP, FORMERR with a readable question); our payload is 1232 by default and
  ``--udp-payload`` is honoured both as advertised and as the cap on UDP answers; a
  client payload below 512 counts as 512; the DO bit is echoed; version 1 → BADVERS
  (extended rcode 16: 0 in the header, 1 in the OPT) with an OPT of version 0; two OPT
  records → FORMERR; unknown options are ignored and not echoed;
* truncation (RFC 1035 §4.2.1, RFC 2181 §9, RFC 9471) with a private zone: an answer that
  does not fit gets TC=1, keeps the question, holds only whole RRsets and never exceeds
  512 octets (or the EDNS size, e.g. 600) — checked on the raw datagram; the same query
  over TCP gets every record without TC; an answer that fits 1232 is not truncated;
  additional addresses that do not fit are left out without TC; in-domain glue of a
  referral that does not fit sets TC;
* TCP (RFC 7766): several queries on one connection, 10 pipelined queries in one write
  answered by ID, pipelined answers sent without Nagle's delay, a query split across
  writes; the idle timeout closes a quiet connection (``--tcp-idle-timeout``) but the
  default one does not within a second; over the connection cap (``--tcp-max-connections 3``)
  a 4th connection is answered and the idlest of the first three closed, the other two still
  answer; over ``--tcp-max-per-client 2`` the 3rd connection is closed without an answer;
* 0x20: a mixed-case qname comes back byte for byte in the response's question, over UDP
  and TCP.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import ServerProcess, rrset_texts, start_server, stop_server
from support import (
    BIG_A_COUNT,
    BIG_TXT_COUNT,
    MANY_MX_COUNT,
    REFERRAL_NS_COUNT,
    big_zone_text,
    closed_by_peer,
    frame,
    has_ipv6_loopback,
    header,
    listening_addresses,
    query_wire,
    question_bytes,
    recv_exactly,
    tcp_connect,
    tcp_exchange,
    tcp_read_message,
    udp_exchange,
    write_zone,
)

APEX_A = {"example.test. 3600 IN A 192.0.2.10"}
OPT = dns.rdatatype.OPT


def answer_over(host: str, port: int, *, tcp: bool) -> dns.message.Message:
    query = dns.message.make_query("example.test", "A")
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=2.0)
    return dns.query.udp(query, host, port=port, timeout=2.0)


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_ipv4_loopback(shipped_server: ServerProcess, tcp: bool) -> None:
    response = answer_over("127.0.0.1", shipped_server.port, tcp=tcp)
    assert rrset_texts(response.answer) == APEX_A


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this machine")
def test_ipv6_and_several_listen_addresses(zone_dir: Path, server_factory) -> None:
    server = server_factory(zone_dir, "--listen", "[::1]:0", "--listen", "127.0.0.1:0")
    addresses = listening_addresses(server, count=3)
    assert len(addresses) == 3
    assert sum(host == "::1" for host, _ in addresses) == 1
    assert len({port for _, port in addresses}) == 3, "each port-0 listen address gets its own port"
    for host, port in addresses:
        for tcp in (False, True):
            response = answer_over(host, port, tcp=tcp)
            assert rrset_texts(response.answer) == APEX_A, (host, port, tcp)


def test_several_ipv4_listen_addresses(zone_dir: Path, server_factory) -> None:
    server = server_factory(zone_dir, "--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0")
    addresses = listening_addresses(server, count=3)
    assert {host for host, _ in addresses} == {"127.0.0.1", "127.0.0.2"}
    for host, port in addresses:
        for tcp in (False, True):
            assert rrset_texts(answer_over(host, port, tcp=tcp).answer) == APEX_A, (host, port, tcp)


# ---------------------------------------------------------------- EDNS(0)


@pytest.mark.parametrize("qname, qtype, rdclass, rcode", [
    ("example.test", "A", "IN", dns.rcode.NOERROR),
    ("nope.example.test", "A", "IN", dns.rcode.NXDOMAIN),
    ("example.org", "A", "IN", dns.rcode.REFUSED),
    ("example.test", "A", "HS", dns.rcode.REFUSED),
    ("version.bind", "TXT", "CH", dns.rcode.NOERROR),
])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_opt_iff_query_had_one(shipped_server: ServerProcess, qname, qtype, rdclass, rcode, tcp: bool) -> None:
    plain = shipped_server.query(qname, qtype, rdclass=rdclass, tcp=tcp)
    assert plain.rcode() == rcode
    assert plain.edns == -1 and plain.opt is None
    with_edns = shipped_server.query(qname, qtype, rdclass=rdclass, tcp=tcp, use_edns=0)
    assert with_edns.rcode() == rcode
    assert with_edns.edns == 0 and with_edns.opt is not None


def test_opt_in_notimp_iff_query_had_one(shipped_server: ServerProcess) -> None:
    for use_edns, expect_opt in ((False, False), (0, True)):
        query = dns.message.make_query("example.test", "SOA", use_edns=use_edns)
        query.set_opcode(dns.opcode.NOTIFY)
        response = dns.message.from_wire(udp_exchange(shipped_server.host, shipped_server.port, query.to_wire()))
        assert response.rcode() == dns.rcode.NOTIMP
        assert (response.opt is not None) == expect_opt


def test_opt_in_formerr_for_two_questions_iff_query_had_one(shipped_server: ServerProcess) -> None:
    for use_edns in (False, True):
        wire = bytearray(query_wire("example.test", "A", ident=0x4242))
        question = bytes(wire[12:])
        wire[4:6] = struct.pack("!H", 2)
        packet = bytes(wire) + question
        if use_edns:
            packet = packet[:10] + struct.pack("!H", 1) + packet[12:] + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
        reply = udp_exchange(shipped_server.host, shipped_server.port, packet)
        ident, flags, _, _, _, arcount = header(reply)
        assert ident == 0x4242 and flags & 0xF == dns.rcode.FORMERR
        assert arcount == (1 if use_edns else 0)


def test_default_payload_is_1232(shipped_server: ServerProcess) -> None:
    for payload in (512, 1232, 4096):
        response = shipped_server.query("example.test", "A", use_edns=0, payload=payload)
        assert response.payload == 1232


@pytest.mark.slow
def test_udp_payload_flag(tmp_path: Path, server_factory) -> None:
    """``--udp-payload`` is what we advertise and the cap on what we send over UDP."""
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, "big.test", big_zone_text())
    default = server_factory(zone_dir)
    larger = server_factory(zone_dir, "--udp-payload", "4000")
    smaller = server_factory(zone_dir, "--udp-payload", "700")
    assert larger.query("big.test", "SOA", use_edns=0).payload == 4000
    assert smaller.query("big.test", "SOA", use_edns=0).payload == 700
    # The TXT RRset is about 2.6 kB: over 1232, under 4000.
    wire = query_wire("txt.big.test", "TXT", use_edns=0, payload=4096)
    reply = udp_exchange(default.host, default.port, wire)
    assert header(reply)[1] & dns.flags.TC and len(reply) <= 1232
    reply = udp_exchange(larger.host, larger.port, wire)
    assert not header(reply)[1] & dns.flags.TC
    assert 1232 < len(reply) <= 4000
    assert len(dns.message.from_wire(reply).answer[0]) == BIG_TXT_COUNT
    # 60 A records (about 1 kB) fit 1232 but not 700.
    wire = query_wire("many.big.test", "A", use_edns=0, payload=4096)
    assert not header(udp_exchange(default.host, default.port, wire))[1] & dns.flags.TC
    reply = udp_exchange(smaller.host, smaller.port, wire)
    assert header(reply)[1] & dns.flags.TC and len(reply) <= 700


def test_small_client_payload_counts_as_512(tmp_path: Path, server_factory) -> None:
    """RFC 6891 §6.2.5: a requestor's payload below 512 is treated as 512."""
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, "big.test", big_zone_text())
    server = server_factory(zone_dir)
    reply = udp_exchange(server.host, server.port, query_wire("mxhost.big.test", "MX", use_edns=0, payload=100))
    assert 100 < len(reply) <= 512
    response = dns.message.from_wire(reply)
    assert not response.flags & dns.flags.TC
    assert [len(rrset) for rrset in response.answer] == [MANY_MX_COUNT]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_do_bit_echoed(shipped_server: ServerProcess, tcp: bool) -> None:
    for want in (False, True):
        response = shipped_server.query("example.test", "A", tcp=tcp, use_edns=0, want_dnssec=want)
        assert bool(response.ednsflags & dns.flags.DO) == want
        assert rrset_texts(response.answer) == APEX_A


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_edns_version_1_is_badvers(shipped_server: ServerProcess, tcp: bool) -> None:
    query = dns.message.make_query("example.test", "A", use_edns=1)
    if tcp:
        reply = dns.query.tcp(query, shipped_server.host, port=shipped_server.port, timeout=2.0).to_wire()
    else:
        reply = udp_exchange(shipped_server.host, shipped_server.port, query.to_wire())
    response = dns.message.from_wire(reply)
    assert response.rcode() == dns.rcode.BADVERS == 16
    assert header(reply)[1] & 0xF == 0, "the low 4 bits of BADVERS (16) are 0 in the header"
    assert response.opt is not None
    assert (response.opt.ttl >> 24) & 0xFF == 1, "the high 8 bits of the extended rcode sit in the OPT TTL"
    assert response.edns == 0, "we answer with the version we speak"
    assert response.answer == []
    assert response.id == query.id


def test_two_opt_records_formerr(shipped_server: ServerProcess) -> None:
    wire = bytearray(query_wire("example.test", "A", ident=0x7777, use_edns=0))
    opt = bytes(wire[-11:])
    assert opt[:3] == b"\x00\x00\x29"
    wire += opt
    struct.pack_into("!H", wire, 10, 2)
    reply = udp_exchange(shipped_server.host, shipped_server.port, bytes(wire))
    ident, flags, _, ancount, _, _ = header(reply)
    assert ident == 0x7777
    assert flags & 0xF == dns.rcode.FORMERR
    assert ancount == 0


@pytest.mark.parametrize("options", [
    [dns.edns.GenericOption(65001, b"experimental")],
    [dns.edns.GenericOption(65002, b"")],
    [dns.edns.ECSOption("192.0.2.0", 24), dns.edns.GenericOption(65003, b"\x00" * 40)],
    [dns.edns.GenericOption(dns.edns.COOKIE, b"clientck")],
], ids=["private", "empty", "ecs-and-private", "cookie"])
def test_unknown_edns_options_ignored(shipped_server: ServerProcess, options) -> None:
    response = shipped_server.query("example.test", "A", use_edns=0, options=options)
    assert response.rcode() == dns.rcode.NOERROR
    assert rrset_texts(response.answer) == APEX_A
    assert not [o for o in response.options if o.otype >= 65000], "unknown options are not echoed"


# ---------------------------------------------------------------- truncation


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory):
    zone_dir = tmp_path_factory.mktemp("big") / "zones"
    write_zone(zone_dir, "big.test", big_zone_text())
    server = start_server(zone_dir)
    try:
        yield server
    finally:
        stop_server(server.process)


def full_answer(server: ServerProcess, qname: str, qtype: str) -> dns.message.Message:
    return server.query(qname, qtype, tcp=True)


def assert_whole_rrsets(partial: dns.message.Message, full: dns.message.Message) -> None:
    """Every RRset in every section of ``partial`` is complete, as the TCP answer has it."""
    for section in ("answer", "authority", "additional"):
        complete = {(r.name, r.rdtype): rrset_texts([r]) for r in getattr(full, section)}
        for rrset in getattr(partial, section):
            assert rrset_texts([rrset]) == complete[(rrset.name, rrset.rdtype)], f"partial RRset in {section}"


@pytest.mark.parametrize("qname, qtype, count", [
    ("txt.big.test", "TXT", BIG_TXT_COUNT),
    ("many.big.test", "A", BIG_A_COUNT),
])
@pytest.mark.parametrize("edns", [None, 600], ids=["no-edns", "edns-600"])
def test_truncated_over_udp_whole_over_tcp(big_server: ServerProcess, qname: str, qtype: str, count: int, edns) -> None:
    limit = 512 if edns is None else edns
    kwargs = {} if edns is None else dict(use_edns=0, payload=edns)
    wire = query_wire(qname, qtype, ident=0x2468, **kwargs)
    reply = udp_exchange(big_server.host, big_server.port, wire)
    assert len(reply) <= limit, f"UDP answer of {len(reply)} octets exceeds {limit}"
    ident, flags, qdcount, _, _, arcount = header(reply)
    assert ident == 0x2468
    assert flags & dns.flags.TC
    assert flags & dns.flags.AA
    assert qdcount == 1 and question_bytes(reply) == question_bytes(wire), "the question is kept"
    partial = dns.message.from_wire(reply)
    assert partial.rcode() == dns.rcode.NOERROR
    assert (partial.opt is not None) == (edns is not None)
    full = full_answer(big_server, qname, qtype)
    assert not full.flags & dns.flags.TC
    assert [len(rrset) for rrset in full.answer] == [count]
    assert_whole_rrsets(partial, full)


def test_fits_in_edns_not_truncated(big_server: ServerProcess) -> None:
    reply = udp_exchange(big_server.host, big_server.port, query_wire("many.big.test", "A", use_edns=0, payload=1232))
    assert not header(reply)[1] & dns.flags.TC
    assert len(reply) <= 1232
    assert [len(rrset) for rrset in dns.message.from_wire(reply).answer] == [BIG_A_COUNT]


def test_additional_that_does_not_fit_is_left_out_without_tc(big_server: ServerProcess) -> None:
    """RFC 2181 §9: TC only when required data is missing; optional additional addresses
    are dropped RRset by RRset."""
    wire = query_wire("mxhost.big.test", "MX")
    reply = udp_exchange(big_server.host, big_server.port, wire)
    assert len(reply) <= 512
    partial = dns.message.from_wire(reply)
    assert not partial.flags & dns.flags.TC
    assert [len(rrset) for rrset in partial.answer] == [MANY_MX_COUNT]
    full = full_answer(big_server, "mxhost.big.test", "MX")
    assert len(full.additional) == 2 * MANY_MX_COUNT
    assert len(partial.additional) < len(full.additional)
    assert_whole_rrsets(partial, full)


def test_referral_glue_that_does_not_fit_sets_tc(big_server: ServerProcess) -> None:
    """RFC 9471 §3: in-domain glue of a referral must fit, or TC is set."""
    wire = query_wire("host.deleg.big.test", "A")
    reply = udp_exchange(big_server.host, big_server.port, wire)
    assert len(reply) <= 512
    partial = dns.message.from_wire(reply)
    assert partial.flags & dns.flags.TC
    assert not partial.flags & dns.flags.AA
    full = full_answer(big_server, "host.deleg.big.test", "A")
    assert not full.flags & dns.flags.TC and not full.flags & dns.flags.AA
    assert [len(rrset) for rrset in full.authority] == [REFERRAL_NS_COUNT]
    assert len(full.additional) == 2 * REFERRAL_NS_COUNT
    assert_whole_rrsets(partial, full)
    fits = dns.message.from_wire(udp_exchange(big_server.host, big_server.port,
                                              query_wire("host.deleg.big.test", "A", use_edns=0, payload=1232)))
    assert not fits.flags & dns.flags.TC
    assert rrset_texts(fits.additional) == rrset_texts(full.additional)


# ---------------------------------------------------------------- TCP (RFC 7766)


def test_several_queries_on_one_connection(shipped_server: ServerProcess) -> None:
    names = ["example.test", "mail.example.test", "nope.example.test", "www.example.test", "example.org"]
    with tcp_connect(shipped_server.host, shipped_server.port) as sock:
        for ident, qname in enumerate(names, start=100):
            response = dns.message.from_wire(tcp_exchange(sock, query_wire(qname, "A", ident=ident)))
            assert response.id == ident
            assert response.question[0].name == dns.name.from_text(qname)


def test_pipelined_queries(shipped_server: ServerProcess) -> None:
    questions = {1000 + i: (f"host{i}.users.example.test" if i % 2 else "example.test", "A") for i in range(10)}
    with tcp_connect(shipped_server.host, shipped_server.port, timeout=5.0) as sock:
        sock.sendall(b"".join(frame(query_wire(qname, qtype, ident=ident)) for ident, (qname, qtype) in questions.items()))
        answers = {}
        for _ in range(len(questions)):
            reply = tcp_read_message(sock)
            assert reply, "connection closed before every pipelined query was answered"
            response = dns.message.from_wire(reply)
            answers[response.id] = response
    assert set(answers) == set(questions)
    for ident, (qname, _) in questions.items():
        response = answers[ident]
        assert response.question[0].name == dns.name.from_text(qname)
        assert response.rcode() == dns.rcode.NOERROR
        assert len(response.answer) == 1 and response.answer[0].name == dns.name.from_text(qname)


def test_pipelined_answers_not_held_back(shipped_server: ServerProcess) -> None:
    """Two answers per write: the second must not wait for our delayed ACK (Nagle's
    algorithm on the server socket costs ~40 ms a round; 25 rounds take well under 0.1 s
    without it). Regression: the accepted sockets had no TCP_NODELAY."""
    first, second = query_wire("example.test", "A", ident=1), query_wire("mail.example.test", "A", ident=2)
    with tcp_connect(shipped_server.host, shipped_server.port, timeout=5.0) as sock:
        tcp_exchange(sock, first)  # warm up: connection accepted and served
        started = time.monotonic()
        for _ in range(25):
            sock.sendall(frame(first) + frame(second))
            assert [dns.message.from_wire(tcp_read_message(sock)).id for _ in range(2)] == [1, 2]
        elapsed = time.monotonic() - started
    assert elapsed < 0.5, f"25 pipelined pairs took {elapsed:.2f}s: answers are being delayed"


def test_query_split_across_writes(shipped_server: ServerProcess) -> None:
    wire = frame(query_wire("example.test", "A", ident=31337))
    with tcp_connect(shipped_server.host, shipped_server.port) as sock:
        for piece in (wire[:1], wire[1:2], wire[2:9], wire[9:]):
            sock.sendall(piece)
        response = dns.message.from_wire(tcp_read_message(sock))
    assert response.id == 31337
    assert rrset_texts(response.answer) == APEX_A


@pytest.mark.slow
def test_idle_timeout_closes_connection(zone_dir: Path, server_factory) -> None:
    server = server_factory(zone_dir, "--tcp-idle-timeout", "0.5")
    with tcp_connect(server.host, server.port, timeout=5.0) as sock:
        response = dns.message.from_wire(tcp_exchange(sock, query_wire("example.test", "A")))
        assert rrset_texts(response.answer) == APEX_A
        started = time.monotonic()
        assert closed_by_peer(sock), "an idle connection must be closed by the server"
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 4.0, f"closed after {elapsed:.2f}s, configured 0.5s"
    # A connection that never sends anything is closed the same way.
    with tcp_connect(server.host, server.port, timeout=5.0) as sock:
        assert closed_by_peer(sock)


@pytest.mark.slow
def test_default_idle_timeout_keeps_connection_for_a_while(shipped_server: ServerProcess) -> None:
    with tcp_connect(shipped_server.host, shipped_server.port, timeout=1.0) as sock:
        tcp_exchange(sock, query_wire("example.test", "A"))
        with pytest.raises(socket.timeout):
            sock.recv(1)  # nothing arrives and the server does not close within 1 s
        assert tcp_exchange(sock, query_wire("example.test", "A"))


def test_connection_cap_closes_the_idlest_for_a_new_one(zone_dir: Path, server_factory) -> None:
    """Over --tcp-max-connections a new client is not locked out: the connection that got
    its last answer longest ago is closed (RFC 7766 §6.2.3), the others keep answering."""
    server = server_factory(zone_dir, "--tcp-max-connections", "3")
    wire = query_wire("example.test", "A")
    first = [tcp_connect(server.host, server.port, timeout=3.0) for _ in range(3)]
    try:
        for sock in first:  # each answered in turn: first[0] is now the idlest
            assert rrset_texts(dns.message.from_wire(tcp_exchange(sock, wire)).answer) == APEX_A
        with tcp_connect(server.host, server.port, timeout=3.0) as fourth:
            assert rrset_texts(dns.message.from_wire(tcp_exchange(fourth, wire)).answer) == APEX_A
            assert closed_by_peer(first[0]), "the idlest connection must make room"
            for sock in first[1:]:
                assert rrset_texts(dns.message.from_wire(tcp_exchange(sock, wire)).answer) == APEX_A
    finally:
        for sock in first:
            sock.close()


def test_per_client_cap_refuses_the_one_over_it(zone_dir: Path, server_factory) -> None:
    server = server_factory(zone_dir, "--tcp-max-per-client", "2")
    wire = query_wire("example.test", "A")
    first = [tcp_connect(server.host, server.port, timeout=3.0) for _ in range(2)]
    try:
        for sock in first:
            assert tcp_exchange(sock, wire)
        with tcp_connect(server.host, server.port, timeout=3.0) as third:
            try:
                third.sendall(frame(wire))
                reply = recv_exactly(third, 2)
            except (BrokenPipeError, ConnectionResetError):
                reply = b""
            assert reply == b"", "the connection over the per-address cap must be closed without an answer"
        for sock in first:
            assert tcp_exchange(sock, wire)
    finally:
        for sock in first:
            sock.close()


# ---------------------------------------------------------------- 0x20


@pytest.mark.parametrize("qname", ["WwW.ExAmPlE.TeSt", "MAIL.EXAMPLE.TEST", "nOpE.eXaMpLe.TeSt", "ExAmPlE.oRg"])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_0x20_question_echoed_exactly(shipped_server: ServerProcess, qname: str, tcp: bool) -> None:
    wire = query_wire(qname, "A", ident=0x2020)
    sent = question_bytes(wire)
    first = qname.split(".")[0].encode()
    assert sent[1:1 + len(first)] == first, "dnspython keeps the case it was given"
    if tcp:
        with tcp_connect(shipped_server.host, shipped_server.port) as sock:
            reply = tcp_exchange(sock, wire)
    else:
        reply = udp_exchange(shipped_server.host, shipped_server.port, wire)
    assert header(reply)[0] == 0x2020
    assert header(reply)[2] == 1
    assert reply[12:12 + len(sent)] == sent


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_0x20_repeated_queries_echo_each_case(shipped_server: ServerProcess, tcp: bool) -> None:
    """The same name asked in different cases (a cache keyed on the lowercase name must
    still echo each query's own case)."""
    for qname in ("pool.example.test", "POOL.example.test", "PoOl.ExAmPlE.tEsT", "pool.EXAMPLE.test"):
        wire = query_wire(qname, "MX", use_edns=0)
        if tcp:
            with tcp_connect(shipped_server.host, shipped_server.port) as sock:
                reply = tcp_exchange(sock, wire)
        else:
            reply = udp_exchange(shipped_server.host, shipped_server.port, wire)
        sent = question_bytes(wire)
        assert reply[12:12 + len(sent)] == sent
        assert len(dns.message.from_wire(reply).answer[0]) == 4
